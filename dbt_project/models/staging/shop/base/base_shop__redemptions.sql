with

source as (

    select * from {{ source('shop', 'redemptions') }}

),

users as (

    select * from {{ ref('base_shop__users') }}

),

promotions as (

    select * from {{ ref('base_shop__promotions') }}

),

staged_users as (

    select shop_user_id
    from users
    where exclusion_reason is null and not is_duplicate

),

staged_promotions as (

    select promotion_id
    from promotions
    where exclusion_reason is null and not is_duplicate

),

-- offset 0 (skips no row): a subquery Postgres keeps as it is, not inlined into its readers, so each normalized value
-- (hashes, regexps) is computed once per row, without the temporary copy of every row a materialized CTE writes
normalized as (

    select
        {{ clean_text('promotion_id') }} as promotion_id,
        {{ clean_text('user_id') }} as shop_user_id,
        {{ pseudonymize('user_id') }} as user_id,
        {{ clean_text('order_id') }} as order_id,
        redeemed_at,
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
        md5(concat_ws('|', promotion_id, user_id, order_id, extract(epoch from redeemed_at))) as redemption_id
    from normalized

),

classified as (

    select
        keyed.*,
        case
            when keyed.promotion_id is null then 'missing_promotion_id'
            when keyed.shop_user_id is null then 'missing_user_id'
            when keyed.redeemed_at is null then 'missing_redeemed_at'
            when keyed.redeemed_at > {{ as_of_timestamp() }} then 'redeemed_after_as_of'
            when staged_promotions.promotion_id is null then 'unknown_promotion'
            when staged_users.shop_user_id is null then 'unknown_user'
        end as exclusion_reason
    from keyed
    left join staged_users
        on keyed.shop_user_id = staged_users.shop_user_id
    left join staged_promotions
        on keyed.promotion_id = staged_promotions.promotion_id

),

versioned as (

    select
        *,
        row_number() over (
            partition by redemption_id, exclusion_reason is null
            order by load_seq desc nulls last, batch_id desc, loaded_at desc, source_row_number desc
        ) as version_rank
    from classified

),

final as (

    select
        redemption_id,
        redemption_id as record_key,
        promotion_id,
        user_id,
        order_id,
        redeemed_at,
        batch_id,
        source_file,
        source_row_number,
        loaded_at,
        exclusion_reason,
        exclusion_reason is null and version_rank > 1 as is_duplicate
    from versioned

)

select * from final
