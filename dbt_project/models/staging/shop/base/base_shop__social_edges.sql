{#-
    Incremental (delete+insert on edge_id), as base_shop__events: a full build judges every raw row; a later run
    normalizes only the rows of the batches loaded since it last ran and judges them together with the rows already
    here whose verdict they may change: every version of an edge they deliver again, every row of an earlier
    delivery of a batch delivered again (left out; the post-hook deletes what is left of it), rows excluded for an
    unknown user or item (it may have arrived) or for being after as_of, and valid rows after as_of (a re-run of an
    earlier interval) or whose users or shared item are no longer staged. Every version of those edges is ranked
    again, so a run leaves the rows a full build would (tests/integration/test_incremental.py). A table from before
    the model was incremental (no load_seq, which ranks the versions) is rebuilt in place by its next run.
-#}
{{
    config(
        materialized='incremental',
        unique_key='edge_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook=[
            "delete from {{ this }} as earlier_rows
             using {{ source('loads', 'load_audit') }} as batch_loads
             where batch_loads.table_name = 'social_edges' and batch_loads.batch_id = earlier_rows.batch_id
                 and earlier_rows.loaded_at < batch_loads.loaded_at",
            "{{ unique_index_of_kept_rows('edge_id') }}",
            "{{ index_if_missing(['edge_id']) }}",
            "{{ index_if_missing(['batch_id', 'loaded_at']) }}",
        ]
    )
}}
{%- set incremental = is_incremental() and has_column(this, 'load_seq') %}

with

source as (

    select * from {{ source('shop', 'social_edges') }}
    where {{ is_batch_loaded_since_last_run('social_edges', incremental=incremental) }}

),

users as (

    select * from {{ ref('base_shop__users') }}

),

items as (

    select * from {{ ref('base_shop__items') }}

),

-- not materialized: read several times, and the lookups need the table's statistics (a materialized CTE has none);
-- a user's user_id is the keyed hash of the shop's user id, as an edge's from_user_id and to_user_id are
staged_users as not materialized (

    select user_id
    from users
    where exclusion_reason is null and not is_duplicate

),

staged_items as not materialized (

    select item_id
    from items
    where exclusion_reason is null and not is_duplicate

),

-- offset 0 (skips no row): a subquery Postgres keeps as it is, not inlined into its readers, so each normalized value
-- (hashes, regexps) is computed once per row, without the temporary copy of every row a materialized CTE writes
normalized as (

    select
        {{ pseudonymize('from_user_id') }} as from_user_id,
        {{ pseudonymize('to_user_id') }} as to_user_id,
        lower({{ clean_text('kind') }}) as kind,
        {{ clean_text('item_id') }} as item_id,
        created_at,
        _batch_id as batch_id,
        _source_file as source_file,
        _row_number as source_row_number,
        _loaded_at as loaded_at,
        _load_seq as load_seq
    from source
    offset 0  -- noqa: AM09

),

-- an edge is one relation between two users; a share is one item shared at one time
delivered as (

    select
        md5(
            concat_ws(
                '|',
                from_user_id,
                to_user_id,
                kind,
                case when kind = 'share' then item_id end,
                case when kind = 'share' then extract(epoch from created_at) end
            )
        ) as edge_id,
        from_user_id,
        to_user_id,
        kind,
        case when kind = 'share' then item_id end as item_id,
        created_at,
        batch_id,
        source_file,
        source_row_number,
        loaded_at,
        load_seq
    from normalized

),

-- the new rows, and in an incremental run the rows here whose verdict they may change (see the top of the file)
candidates as (

    select * from delivered
    {%- if incremental %}
        union all
        select
            existing_rows.edge_id,
            existing_rows.from_user_id,
            existing_rows.to_user_id,
            existing_rows.kind,
            existing_rows.item_id,
            existing_rows.created_at,
            existing_rows.batch_id,
            existing_rows.source_file,
            existing_rows.source_row_number,
            existing_rows.loaded_at,
            existing_rows.load_seq
        from (
            select existing_versions.*
            from (
                select delivered.edge_id from delivered
                union
                select reopened.edge_id
                from {{ this }} as reopened
                where
                    {{ is_batch_loaded_since_last_run('social_edges', 'reopened.batch_id') }}
                    or reopened.exclusion_reason in (
                        'unknown_from_user', 'unknown_to_user', 'unknown_item', 'created_after_as_of'
                    )
                    or reopened.created_at > {{ as_of_timestamp() }}
                    or (
                        reopened.exclusion_reason is null
                        and (
                            reopened.from_user_id not in (select staged_users.user_id from staged_users)
                            or reopened.to_user_id not in (select staged_users.user_id from staged_users)
                            or (
                                reopened.kind = 'share'
                                and reopened.item_id not in (select staged_items.item_id from staged_items)
                            )
                        )
                    )
            ) as reopened_edges
            -- every version of each reopened edge, looked up by the index on edge_id (offset 0 keeps the lookup per
            -- edge: the planner, which cannot estimate the reopened edges, would hash-join the whole table instead)
            cross join
                lateral (
                    select edge_rows.*
                    from {{ this }} as edge_rows
                    where edge_rows.edge_id = reopened_edges.edge_id
                    offset 0  -- noqa: AM09
                ) as existing_versions
            offset 0  -- noqa: AM09
        ) as existing_rows
        where not {{ is_batch_loaded_since_last_run('social_edges', 'existing_rows.batch_id') }}
    {%- endif %}

),

classified as (

    select
        candidates.*,
        case
            when candidates.from_user_id is null then 'missing_from_user_id'
            when candidates.to_user_id is null then 'missing_to_user_id'
            when candidates.kind is null then 'missing_kind'
            when candidates.kind not in ('follow', 'friend', 'referral', 'share') then 'unknown_kind'
            when candidates.created_at is null then 'missing_created_at'
            when candidates.created_at > {{ as_of_timestamp() }} then 'created_after_as_of'
            when candidates.from_user_id = candidates.to_user_id then 'self_edge'
            when candidates.kind = 'share' and candidates.item_id is null then 'missing_item_id'
            when candidates.from_user_id not in (select staged_users.user_id from staged_users) then 'unknown_from_user'
            when candidates.to_user_id not in (select staged_users.user_id from staged_users) then 'unknown_to_user'
            when
                candidates.kind = 'share'
                and candidates.item_id not in (select staged_items.item_id from staged_items)
                then 'unknown_item'
        end as exclusion_reason
    from candidates

),

versioned as (

    select
        *,
        row_number() over (
            partition by edge_id, exclusion_reason is null
            order by load_seq desc nulls last, batch_id desc, loaded_at desc, source_row_number desc
        ) as version_rank
    from classified

),

final as (

    select
        edge_id,
        edge_id as record_key,
        from_user_id,
        to_user_id,
        kind,
        item_id,
        created_at,
        batch_id,
        source_file,
        source_row_number,
        loaded_at,
        load_seq,
        exclusion_reason,
        exclusion_reason is null and version_rank > 1 as is_duplicate
    from versioned

)

select * from final
