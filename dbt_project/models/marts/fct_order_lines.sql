{{
    config(
        indexes=[
            {'columns': ['order_line_id'], 'unique': true},
            {'columns': ['user_id']},
            {'columns': ['item_id']},
        ]
    )
}}

with

order_lines as (

    select * from {{ ref('stg_shop__order_lines') }}

),

orders as (

    select * from {{ ref('fct_orders') }}

),

joined as (

    select
        order_lines.order_line_id,
        order_lines.order_id,
        orders.user_id,
        order_lines.item_id,
        orders.ordered_at,
        orders.ordered_date,
        orders.order_status,
        orders.is_completed,
        orders.has_promotion,
        order_lines.quantity,
        order_lines.unit_price,
        order_lines.discount_amount,
        order_lines.quantity * order_lines.unit_price as line_amount
    from order_lines
    inner join orders
        on order_lines.order_id = orders.order_id

),

final as (

    select
        order_line_id,
        order_id,
        user_id,
        item_id,
        ordered_at,
        ordered_date,
        order_status,
        is_completed,
        has_promotion,
        cast(quantity as bigint) as quantity,
        unit_price,
        discount_amount,
        discount_amount > 0 as is_discounted,
        line_amount,
        case when is_completed then line_amount else 0 end as net_line_amount
    from joined

)

select * from final
