{{
    config(
        materialized='table',
        indexes=[{'columns': ['user_id'], 'unique': true}]
    )
}}

with

users as (

    select * from {{ ref('dim_users') }}

),

orders as (

    select * from {{ ref('fct_orders') }}

),

order_lines as (

    select * from {{ ref('fct_order_lines') }}

),

items as (

    select * from {{ ref('dim_items') }}

),

priced_lines as (

    select
        order_lines.user_id,
        order_lines.quantity,
        order_lines.unit_price
        / coalesce(items.subcategory_median_price, items.category_median_price) as relative_price
    from order_lines
    inner join items
        on order_lines.item_id = items.item_id
    where
        order_lines.is_completed
        and coalesce(items.subcategory_median_price, items.category_median_price) > 0

),

user_prices as (

    select
        user_id,
        sum(quantity) as priced_units,
        sum(quantity * relative_price) / sum(quantity) as average_relative_price,
        sum(quantity * greatest(0, least(1, 1 - relative_price))) / sum(quantity) as price_sensitivity
    from priced_lines
    group by user_id

),

price_tiers as (

    select
        *,
        percent_rank() over (order by average_relative_price) as relative_price_percentile
    from user_prices

),

user_orders as (

    select
        user_id,
        count(*) as completed_orders,
        count(*) filter (where has_promotion) as promotion_orders
    from orders
    where is_completed
    group by user_id

),

population as (

    select coalesce(sum(promotion_orders) * 1.0 / nullif(sum(completed_orders), 0), 0) as promotion_rate
    from user_orders

),

final as (

    select
        users.user_id,
        cast(coalesce(price_tiers.priced_units, 0) as bigint) as priced_units,
        cast(price_tiers.average_relative_price as double precision) as average_relative_price,
        case
            when price_tiers.user_id is null then 'unknown'
            when price_tiers.relative_price_percentile < 1.0 / 3 then 'low'
            when price_tiers.relative_price_percentile < 2.0 / 3 then 'mid'
            else 'high'
        end as spending_power,
        cast(price_tiers.price_sensitivity as double precision) as price_sensitivity,
        cast(coalesce(user_orders.completed_orders, 0) as integer) as completed_orders,
        cast(coalesce(user_orders.promotion_orders, 0) as integer) as promotion_orders,
        cast(
            (
                coalesce(user_orders.promotion_orders, 0)
                + {{ var('promo_prior_orders') }} * population.promotion_rate
            )
            / nullif(coalesce(user_orders.completed_orders, 0) + {{ var('promo_prior_orders') }}, 0)
            as double precision
        ) as promo_sensitivity
    from users
    cross join population
    left join price_tiers
        on users.user_id = price_tiers.user_id
    left join user_orders
        on users.user_id = user_orders.user_id

)

select * from final
