{#-
    Incremental (delete+insert on order_id), like fct_interactions. An order
    is shaped by its own row, its lines and its redemptions, so its loaded_at
    is the newest load of any of them: a line or redemption delivered after
    the order refreshes it. The post-hooks move an account's orders to its
    current person, delete orders staging no longer holds and those of users
    now flagged as bots, so the table equals a full rebuild.
-#}
{{
    config(
        materialized='incremental',
        unique_key='order_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        indexes=[{'columns': ['order_id'], 'unique': true}, {'columns': ['user_id']}, {'columns': ['loaded_at']}],
        post_hook=[
            "{{ delete_rows_missing_from(ref('stg_shop__orders'), 'order_id', written_column='refreshed_at') }}",
            "update {{ this }} as orders set user_id = persons.person_user_id, refreshed_at = {{ refreshed_at() }}
             from {{ ref('identity_persons') }} as persons
             where orders.account_user_id = persons.account_user_id
               and orders.user_id <> persons.person_user_id",
            "delete from {{ this }} as orders using {{ ref('int_bot_users') }} as bot_users
             where orders.user_id = bot_users.user_id",
        ]
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
        min(promotion_id) as promotion_id,
        max(loaded_at) as loaded_at
    from redemptions
    where order_id is not null
    group by order_id

),

joined as (

    select
        orders.order_id,
        orders.user_id,
        orders.account_user_id,
        orders.ordered_at,
        orders.order_status,
        orders.platform,
        coalesce(orders.promotion_id, order_redemptions.promotion_id) as promotion_id,
        coalesce(order_totals.line_count, 0) as line_count,
        coalesce(order_totals.unit_count, 0) as unit_count,
        coalesce(order_totals.order_amount, 0) as order_amount,
        coalesce(order_totals.discount_amount, 0) as discount_amount,
        coalesce(order_totals.has_discounted_line, false) as has_discounted_line,
        greatest(orders.loaded_at, order_totals.loaded_at, order_redemptions.loaded_at) as loaded_at
    from orders
    left join order_totals
        on orders.order_id = order_totals.order_id
    left join order_redemptions
        on orders.order_id = order_redemptions.order_id
    left join bot_users
        on orders.user_id = bot_users.user_id
    where bot_users.user_id is null

),

changed as (

    select joined.*
    from joined
    {{ incremental_anti_join('order_id', 'joined.order_id') }}
    where {{ incremental_filter('joined', 'order_id') }}

),

final as (

    select
        order_id,
        user_id,
        account_user_id,
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
        case when order_status = 'completed' then order_amount else 0 end as net_amount,
        loaded_at,
        {{ refreshed_at() }} as refreshed_at
    from changed

)

select * from final
