{{
    config(
        materialized='table',
        indexes=[{'columns': ['user_id'], 'unique': true}]
    )
}}

with

events as (

    select * from {{ ref('stg_shop__events') }}

),

orders as (

    select * from {{ ref('stg_shop__orders') }}

),

user_days as (

    select
        user_id,
        cast(event_at at time zone 'UTC' as date) as event_date,
        count(*) filter (where event_type = 'view') as item_views,
        count(*) filter (where event_type = 'purchase') as purchase_events
    from events
    group by user_id, cast(event_at at time zone 'UTC' as date)

),

user_activity as (

    select
        user_id,
        max(item_views) as max_daily_item_views,
        sum(item_views) as total_item_views,
        sum(purchase_events) as purchase_events
    from user_days
    group by user_id

),

user_orders as (

    select
        user_id,
        count(*) as order_count
    from orders
    group by user_id

),

flagged as (

    select
        user_activity.user_id,
        user_activity.max_daily_item_views,
        user_activity.total_item_views,
        user_activity.purchase_events,
        coalesce(user_orders.order_count, 0) as order_count,
        case
            when
                user_activity.max_daily_item_views > {{ var('bot_max_daily_item_views') }}
                then 'too_many_daily_item_views'
            when
                user_activity.total_item_views >= {{ var('bot_min_item_views_without_purchase') }}
                and user_activity.purchase_events = 0
                and coalesce(user_orders.order_count, 0) = 0
                then 'many_item_views_without_purchase'
        end as bot_reason
    from user_activity
    left join user_orders
        on user_activity.user_id = user_orders.user_id

),

final as (

    select
        user_id,
        bot_reason,
        cast(max_daily_item_views as bigint) as max_daily_item_views,
        cast(total_item_views as bigint) as total_item_views,
        cast(purchase_events as bigint) as purchase_events,
        order_count
    from flagged
    where bot_reason is not null

)

select * from final
