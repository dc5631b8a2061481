{{
    config(
        indexes=[{'columns': ['category']}]
    )
}}

with

items as (

    select * from {{ ref('stg_shop__items') }}

),

category_prices as (

    select
        category,
        percentile_cont(0.5) within group (order by price) as category_median_price
    from items
    where price is not null
    group by category

),

subcategory_prices as (

    select
        category_path,
        percentile_cont(0.5) within group (order by price) as subcategory_median_price
    from items
    where price is not null and category_path is not null
    group by category_path

),

price_positions as (

    select
        item_id,
        percent_rank() over (partition by category order by price) as price_percentile_in_category
    from items
    where price is not null

),

final as (

    select
        items.item_id,
        items.item_name,
        items.category,
        items.subcategory,
        items.category_path,
        items.brand,
        items.price,
        cast(category_prices.category_median_price as numeric) as category_median_price,
        cast(subcategory_prices.subcategory_median_price as numeric) as subcategory_median_price,
        cast(price_positions.price_percentile_in_category as double precision) as price_percentile_in_category,
        cast(items.stock_quantity as bigint) as stock_quantity,
        items.is_in_stock,
        items.created_at,
        items.description
    from items
    left join category_prices
        on items.category = category_prices.category
    left join subcategory_prices
        on items.category_path = subcategory_prices.category_path
    left join price_positions
        on items.item_id = price_positions.item_id

)

select * from final
