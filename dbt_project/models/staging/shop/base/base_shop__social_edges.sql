{{ config(post_hook=["{{ unique_index_of_kept_rows('edge_id') }}"]) }}

with

source as (

    select * from {{ source('shop', 'social_edges') }}

),

users as (

    select * from {{ ref('base_shop__users') }}

),

items as (

    select * from {{ ref('base_shop__items') }}

),

-- not materialized: read twice, and the joins need the table's statistics (a materialized CTE has none)
staged_users as not materialized (

    select shop_user_id
    from users
    where exclusion_reason is null and not is_duplicate

),

staged_items as (

    select item_id
    from items
    where exclusion_reason is null and not is_duplicate

),

-- offset 0 (skips no row): a subquery Postgres keeps as it is, not inlined into its readers, so each normalized value
-- (hashes, regexps) is computed once per row, without the temporary copy of every row a materialized CTE writes
normalized as (

    select
        {{ clean_text('from_user_id') }} as shop_from_user_id,
        {{ clean_text('to_user_id') }} as shop_to_user_id,
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
keyed as (

    select
        *,
        md5(
            concat_ws(
                '|',
                from_user_id,
                to_user_id,
                kind,
                case when kind = 'share' then item_id end,
                case when kind = 'share' then extract(epoch from created_at) end
            )
        ) as edge_id
    from normalized

),

classified as (

    select
        keyed.*,
        case
            when keyed.shop_from_user_id is null then 'missing_from_user_id'
            when keyed.shop_to_user_id is null then 'missing_to_user_id'
            when keyed.kind is null then 'missing_kind'
            when keyed.kind not in ('follow', 'friend', 'referral', 'share') then 'unknown_kind'
            when keyed.created_at is null then 'missing_created_at'
            when keyed.created_at > {{ as_of_timestamp() }} then 'created_after_as_of'
            when keyed.shop_from_user_id = keyed.shop_to_user_id then 'self_edge'
            when keyed.kind = 'share' and keyed.item_id is null then 'missing_item_id'
            when from_users.shop_user_id is null then 'unknown_from_user'
            when to_users.shop_user_id is null then 'unknown_to_user'
            when keyed.kind = 'share' and staged_items.item_id is null then 'unknown_item'
        end as exclusion_reason
    from keyed
    left join staged_users as from_users
        on keyed.shop_from_user_id = from_users.shop_user_id
    left join staged_users as to_users
        on keyed.shop_to_user_id = to_users.shop_user_id
    left join staged_items
        on keyed.item_id = staged_items.item_id

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
        case when kind = 'share' then item_id end as item_id,
        created_at,
        batch_id,
        source_file,
        source_row_number,
        loaded_at,
        exclusion_reason,
        exclusion_reason is null and version_rank > 1 as is_duplicate
    from versioned

)

select * from final
