with

order_lines as (

    select * from {{ ref('stg_shop__order_lines') }}

),

final as (

    select
        order_id,
        count(*) as line_count,
        cast(sum(quantity) as bigint) as unit_count,
        sum(quantity * unit_price) as order_amount,
        sum(discount_amount) as discount_amount,
        bool_or(discount_amount > 0) as has_discounted_line,
        max(loaded_at) as loaded_at
    from order_lines
    group by order_id

)

select * from final
