with

base as (

    select * from {{ ref('base_shop__redemptions') }}

),

final as (

    select
        redemption_id,
        promotion_id,
        user_id,
        order_id,
        redeemed_at,
        batch_id,
        loaded_at
    from base
    where exclusion_reason is null and not is_duplicate

)

select * from final
