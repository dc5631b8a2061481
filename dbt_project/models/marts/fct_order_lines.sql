{#-
    Incremental (delete+insert on order_line_id), like fct_interactions. A
    line carries its order's user and status, so its loaded_at is the newer
    of its own and its order's (fct_orders.loaded_at): an order delivered
    again with a new status refreshes its lines. The post-hooks follow the
    orders' user after stitching, and delete lines staging no longer holds or
    whose order left fct_orders, so the table equals a full rebuild.
-#}
{{
    config(
        materialized='incremental',
        unique_key='order_line_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        indexes=[
            {'columns': ['order_line_id'], 'unique': true},
            {'columns': ['user_id']},
            {'columns': ['item_id']},
            {'columns': ['loaded_at']},
        ],
        post_hook=[
            "update {{ this }} as lines set user_id = orders.user_id, refreshed_at = {{ refreshed_at() }}
             from {{ ref('fct_orders') }} as orders
             where lines.order_id = orders.order_id and lines.user_id <> orders.user_id",
            "{{ delete_rows_missing_from(ref('stg_shop__order_lines'), 'order_line_id') }}",
            "{{ delete_rows_missing_from(ref('fct_orders'), 'order_id') }}",
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
        order_lines.quantity * order_lines.unit_price as line_amount,
        greatest(order_lines.loaded_at, orders.loaded_at) as loaded_at
    from order_lines
    inner join orders
        on order_lines.order_id = orders.order_id

),

changed as (

    select joined.*
    from joined
    {{ incremental_anti_join('order_line_id', 'joined.order_line_id') }}
    where {{ incremental_filter('joined', 'order_line_id') }}

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
        case when is_completed then line_amount else 0 end as net_line_amount,
        loaded_at,
        {{ refreshed_at() }} as refreshed_at
    from changed

)

select * from final
