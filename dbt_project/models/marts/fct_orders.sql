{{
    config(
        indexes=[{'columns': ['order_id'], 'unique': true}, {'columns': ['user_id']}]
    )
}}

with

orders as (

    select * from {{ ref('stg_shop__orders') }}

),

order_totals as (

    select * from {{ ref('int_order_lines_aggregated_to_order') }}

),

redemptions as (

    select * from {{ ref('stg_shop__redemptions') }}

),

bot_users as (

    select * from {{ ref('int_bot_users') }}

),

order_redemptions as (

    select
        order_id,
        min(promotion_id) as promotion_id
    from redemptions
    where order_id is not null
    group by order_id

),

joined as (

    select
        orders.order_id,
        orders.user_id,
        orders.ordered_at,
        orders.order_status,
        orders.platform,
        coalesce(orders.promotion_id, order_redemptions.promotion_id) as promotion_id,
        coalesce(order_totals.line_count, 0) as line_count,
        coalesce(order_totals.unit_count, 0) as unit_count,
        coalesce(order_totals.order_amount, 0) as order_amount,
        coalesce(order_totals.discount_amount, 0) as discount_amount,
        coalesce(order_totals.has_discounted_line, false) as has_discounted_line
    from orders
    left join order_totals
        on orders.order_id = order_totals.order_id
    left join order_redemptions
        on orders.order_id = order_redemptions.order_id
    left join bot_users
        on orders.user_id = bot_users.user_id
    where bot_users.user_id is null

),

final as (

    select
        order_id,
        user_id,
        ordered_at,
        cast(ordered_at at time zone 'UTC' as date) as ordered_date,
        order_status,
        order_status = 'completed' as is_completed,
        platform,
        promotion_id,
        promotion_id is not null as has_promotion,
        line_count,
        unit_count,
        order_amount,
        discount_amount,
        has_discounted_line,
        case when order_status = 'completed' then order_amount else 0 end as net_amount
    from joined

)

select * from final
