with

base as (

    select * from {{ ref('base_shop__order_lines') }}

),

final as (

    select
        order_line_id,
        order_id,
        item_id,
        quantity,
        unit_price,
        discount_amount,
        batch_id,
        loaded_at
    from base
    where exclusion_reason is null and not is_duplicate

)

select * from final
