{#-
    Incremental (delete+insert on event_id). A full build judges every raw row. A later run normalizes only the
    rows of the batches loaded since it last ran (is_batch_loaded_since_last_run: quality.load_audit, then
    raw.events by its index on _batch_id) and judges them together with the rows already here whose verdict
    they may change: every version of an event they deliver again, every row of an earlier delivery of a batch
    delivered again (gone from raw: left out, and the post-hook deletes what is left of it), rows excluded for
    an unknown user or item (it may have arrived) or for being after as_of, and valid rows after as_of (a re-run
    of an earlier interval) or whose user or item is no longer staged. Every version of those events is ranked
    again, so a run leaves the rows a full build would (tests/integration/test_incremental.py).
-#}
{{
    config(
        materialized='incremental',
        unique_key='event_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        indexes=[{'columns': ['event_id']}, {'columns': ['batch_id', 'loaded_at']}],
        post_hook=[
            "delete from {{ this }} as earlier_rows
             using {{ source('loads', 'load_audit') }} as batch_loads
             where batch_loads.table_name = 'events' and batch_loads.batch_id = earlier_rows.batch_id
                 and earlier_rows.loaded_at < batch_loads.loaded_at",
            "{{ unique_index_of_kept_rows('event_id') }}",
        ]
    )
}}

with

source as (

    select * from {{ source('shop', 'events') }}
    where {{ is_batch_loaded_since_last_run('events') }}

),

users as (

    select * from {{ ref('base_shop__users') }}

),

items as (

    select * from {{ ref('base_shop__items') }}

),

-- not materialized: each reader joins the tables themselves, so the planner has their statistics (a materialized
-- CTE has none, and the joins of an incremental run were estimated at a hundred times their rows)
staged_users as not materialized (

    select
        shop_user_id,
        user_id
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
        {{ clean_text('event_id') }} as shop_event_id,
        {{ clean_text('user_id') }} as shop_user_id,
        {{ pseudonymize('user_id') }} as user_id,
        {{ clean_text('item_id') }} as item_id,
        -- a click on a served list carries its request_id; a shop's own click without one is a view, as always
        case
            when lower(trim(event_type)) = 'click' and nullif(trim(request_id), '') is not null then 'click'
            else {{ normalize_event_type('event_type') }}
        end as event_type,
        {{ clean_text('request_id') }} as request_id,
        event_at,
        {{ clean_text('session_id') }} as session_id,
        {{ normalize_platform('platform') }} as platform,
        nullif(lower(regexp_replace(trim(query), '\s+', ' ', 'g')), '') as query,
        quantity,
        case when price > 0 then price end as price,
        {{ pseudonymize('device_id') }} as device_hash,
        _batch_id as batch_id,
        _source_file as source_file,
        _row_number as source_row_number,
        _loaded_at as loaded_at,
        _load_seq as load_seq
    from source
    offset 0  -- noqa: AM09

),

keyed as (

    select
        *,
        coalesce(
            shop_event_id,
            'md5:' || md5(concat_ws(
                '|',
                user_id,
                item_id,
                event_type,
                extract(epoch from event_at),
                session_id,
                platform,
                query,
                quantity,
                price,
                request_id
            ))
        ) as event_id
    from normalized

),

-- the new rows, each with whether its user is staged
delivered as (

    select
        keyed.event_id,
        keyed.shop_event_id,
        keyed.user_id,
        keyed.item_id,
        keyed.event_type,
        keyed.request_id,
        keyed.event_at,
        keyed.session_id,
        keyed.platform,
        keyed.query,
        keyed.quantity,
        keyed.price,
        keyed.device_hash,
        keyed.batch_id,
        keyed.source_file,
        keyed.source_row_number,
        keyed.loaded_at,
        keyed.load_seq,
        -- a lookup, not a join: the planner then knows the new rows' count (a join on the computed shop_user_id
        -- was estimated a hundred times too many rows, and the plan of the rest followed it)
        keyed.shop_user_id in (select staged_users.shop_user_id from staged_users) as is_known_user
    from keyed

),

-- the new rows, and in an incremental run the rows here whose verdict they may change (see the top of the
-- file); user_id is the keyed hash of the shop's user id, so a staged user's user_id matches as its shop_user_id
candidates as (

    select * from delivered
    {%- if is_incremental() %}
        union all
        select
            existing_rows.event_id,
            existing_rows.shop_event_id,
            existing_rows.user_id,
            existing_rows.item_id,
            existing_rows.event_type,
            existing_rows.request_id,
            existing_rows.event_at,
            existing_rows.session_id,
            existing_rows.platform,
            existing_rows.query,
            existing_rows.quantity,
            existing_rows.price,
            existing_rows.device_hash,
            existing_rows.batch_id,
            existing_rows.source_file,
            existing_rows.source_row_number,
            existing_rows.loaded_at,
            existing_rows.load_seq,
            staged_users.user_id is not null as is_known_user
        from (
            select existing_versions.*
            from (
                select delivered.event_id from delivered
                union
                select reopened.event_id
                from {{ this }} as reopened
                left join staged_users as reopened_users
                    on reopened.user_id = reopened_users.user_id
                left join staged_items as reopened_items
                    on reopened.item_id = reopened_items.item_id
                where
                    {{ is_batch_loaded_since_last_run('events', 'reopened.batch_id') }}
                    or reopened.exclusion_reason in ('unknown_user', 'unknown_item', 'event_after_as_of')
                    or reopened.event_at > {{ as_of_timestamp() }}
                    or (
                        reopened.exclusion_reason is null
                        and (
                            reopened_users.user_id is null
                            or (reopened.event_type <> 'search' and reopened_items.item_id is null)
                        )
                    )
            ) as reopened_events
            -- every version of each reopened event, looked up by the index on event_id (offset 0 keeps the lookup per
            -- event: the planner, which cannot estimate the reopened events, would hash-join the whole table instead)
            cross join
                lateral (
                    select event_rows.*
                    from {{ this }} as event_rows
                    where event_rows.event_id = reopened_events.event_id
                    offset 0  -- noqa: AM09
                ) as existing_versions
            -- kept as it is: any join to this lookup's rows goes outside it (inside, the planner ran one per event)
            offset 0  -- noqa: AM09
        ) as existing_rows
        left join staged_users
            on existing_rows.user_id = staged_users.user_id
        where not {{ is_batch_loaded_since_last_run('events', 'existing_rows.batch_id') }}
    {%- endif %}

),

classified as (

    select
        candidates.*,
        case
            when candidates.user_id is null then 'missing_user_id'
            when candidates.event_type is null then 'missing_event_type'
            when
                candidates.event_type not in ('view', 'cart', 'remove_from_cart', 'purchase', 'search', 'click')
                then 'unknown_event_type'
            when candidates.event_at is null then 'missing_event_at'
            when candidates.event_at > {{ as_of_timestamp() }} then 'event_after_as_of'
            when candidates.event_type <> 'search' and candidates.item_id is null then 'missing_item_id'
            when candidates.event_type = 'search' and candidates.query is null then 'missing_query'
            when candidates.quantity <= 0 then 'non_positive_quantity'
            when not candidates.is_known_user then 'unknown_user'
            when
                candidates.event_type <> 'search' and staged_items.item_id is null
                then 'unknown_item'
        end as exclusion_reason
    from candidates
    left join staged_items
        on candidates.item_id = staged_items.item_id

),

versioned as (

    select
        *,
        row_number() over (
            partition by event_id, exclusion_reason is null
            order by load_seq desc nulls last, batch_id desc, loaded_at desc, source_row_number desc
        ) as version_rank
    from classified

),

final as (

    select
        event_id,
        event_id as record_key,
        shop_event_id,
        user_id,
        case when event_type <> 'search' then item_id end as item_id,
        event_type,
        event_at,
        session_id,
        platform,
        case when event_type = 'search' then query end as query,
        case
            when event_type in ('cart', 'remove_from_cart', 'purchase') then coalesce(quantity, 1)
            else quantity
        end as quantity,
        price,
        device_hash,
        request_id,
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
