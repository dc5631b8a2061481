with

source as (

    select * from {{ source('shop', 'order_lines') }}

),

orders as (

    select * from {{ ref('base_shop__orders') }}

),

items as (

    select * from {{ ref('base_shop__items') }}

),

staged_orders as (

    select order_id
    from orders
    where exclusion_reason is null and not is_duplicate

),

staged_items as (

    select item_id
    from items
    where exclusion_reason is null and not is_duplicate

),

normalized as (

    select
        {{ clean_text('order_id') }} as order_id,
        {{ clean_text('item_id') }} as item_id,
        quantity,
        unit_price,
        coalesce(discount_amount, 0) as discount_amount,
        _batch_id as batch_id,
        _source_file as source_file,
        _row_number as source_row_number,
        _loaded_at as loaded_at,
        _load_seq as load_seq
    from source

),

classified as (

    select
        normalized.*,
        normalized.order_id || '|' || normalized.item_id as order_line_id,
        case
            when normalized.order_id is null then 'missing_order_id'
            when normalized.item_id is null then 'missing_item_id'
            when normalized.quantity is null then 'missing_quantity'
            when normalized.quantity <= 0 then 'non_positive_quantity'
            when normalized.unit_price is null then 'missing_unit_price'
            when normalized.unit_price <= 0 then 'non_positive_unit_price'
            when normalized.discount_amount < 0 then 'negative_discount_amount'
            when staged_orders.order_id is null then 'unknown_order'
            when staged_items.item_id is null then 'unknown_item'
        end as exclusion_reason
    from normalized
    left join staged_orders
        on normalized.order_id = staged_orders.order_id
    left join staged_items
        on normalized.item_id = staged_items.item_id

),

versioned as (

    select
        *,
        row_number() over (
            partition by order_line_id, exclusion_reason is null
            order by load_seq desc nulls last, batch_id desc, loaded_at desc, source_row_number desc
        ) as version_rank
    from classified

),

final as (

    select
        order_line_id,
        order_line_id as record_key,
        order_id,
        item_id,
        quantity,
        unit_price,
        discount_amount,
        batch_id,
        source_file,
        source_row_number,
        loaded_at,
        exclusion_reason,
        exclusion_reason is null and version_rank > 1 as is_duplicate
    from versioned

)

select * from final
