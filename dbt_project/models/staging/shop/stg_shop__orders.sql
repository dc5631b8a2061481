with

base as (

    select * from {{ ref('base_shop__orders') }}

),

final as (

    select
        order_id,
        user_id,
        ordered_at,
        order_status,
        platform,
        promotion_id,
        batch_id,
        loaded_at
    from base
    where exclusion_reason is null and not is_duplicate

)

select * from final
