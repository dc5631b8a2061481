with

source as (

    select * from {{ source('shop', 'orders') }}

),

users as (

    select * from {{ ref('base_shop__users') }}

),

staged_users as (

    select shop_user_id
    from users
    where exclusion_reason is null and not is_duplicate

),

-- offset 0 (skips no row): a subquery Postgres keeps as it is, not inlined into its readers, so each normalized value
-- (hashes, regexps) is computed once per row, without the temporary copy of every row a materialized CTE writes
normalized as (

    select
        {{ clean_text('order_id') }} as order_id,
        {{ clean_text('user_id') }} as shop_user_id,
        {{ pseudonymize('user_id') }} as user_id,
        ordered_at,
        {{ normalize_order_status('status') }} as order_status,
        {{ normalize_platform('platform') }} as platform,
        {{ clean_text('promotion_id') }} as promotion_id,
        _batch_id as batch_id,
        _source_file as source_file,
        _row_number as source_row_number,
        _loaded_at as loaded_at,
        _load_seq as load_seq
    from source
    offset 0  -- noqa: AM09

),

classified as (

    select
        normalized.*,
        case
            when normalized.order_id is null then 'missing_order_id'
            when normalized.shop_user_id is null then 'missing_user_id'
            when normalized.ordered_at is null then 'missing_ordered_at'
            when normalized.ordered_at > {{ as_of_timestamp() }} then 'ordered_after_as_of'
            when
                normalized.order_status not in ('completed', 'cancelled', 'returned')
                then 'unknown_order_status'
            when staged_users.shop_user_id is null then 'unknown_user'
        end as exclusion_reason
    from normalized
    left join staged_users
        on normalized.shop_user_id = staged_users.shop_user_id

),

versioned as (

    select
        *,
        row_number() over (
            partition by order_id, exclusion_reason is null
            order by load_seq desc nulls last, batch_id desc, loaded_at desc, source_row_number desc
        ) as version_rank
    from classified

),

final as (

    select
        order_id,
        order_id as record_key,
        user_id,
        ordered_at,
        order_status,
        platform,
        promotion_id,
        batch_id,
        source_file,
        source_row_number,
        loaded_at,
        exclusion_reason,
        exclusion_reason is null and version_rank > 1 as is_duplicate
    from versioned

)

select * from final
