with

base as (

    select * from {{ ref('base_shop__promotions') }}

),

final as (

    select
        promotion_id,
        promotion_name,
        promotion_type,
        discount_value,
        category,
        starts_at,
        ends_at,
        batch_id,
        loaded_at
    from base
    where exclusion_reason is null and not is_duplicate

)

select * from final
