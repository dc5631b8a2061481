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

interactions as (

    select * from {{ ref('fct_interactions') }}

),

searches as (

    select * from {{ ref('fct_searches') }}

),

orders as (

    select * from {{ ref('fct_orders') }}

),

last_interactions as (

    select
        user_id,
        max(event_at) as last_interaction_at
    from interactions
    group by user_id

),

last_searches as (

    select
        user_id,
        max(searched_at) as last_search_at
    from searches
    group by user_id

),

last_orders as (

    select
        user_id,
        max(ordered_at) as last_order_at
    from orders
    group by user_id

),

activity as (

    select
        users.user_id,
        users.signup_at,
        greatest(
            users.signup_at,
            last_interactions.last_interaction_at,
            last_searches.last_search_at,
            last_orders.last_order_at
        ) as last_activity_at
    from users
    left join last_interactions
        on users.user_id = last_interactions.user_id
    left join last_searches
        on users.user_id = last_searches.user_id
    left join last_orders
        on users.user_id = last_orders.user_id

),

final as (

    select
        user_id,
        last_activity_at,
        cast(
            floor(extract(epoch from ({{ as_of_timestamp() }} - last_activity_at)) / 86400) as integer
        ) as days_since_last_activity,
        case
            when
                signup_at > {{ as_of_timestamp() }} - interval '{{ var("lifecycle_new_days") }} days'
                then 'new'
            when
                last_activity_at > {{ as_of_timestamp() }} - interval '{{ var("lifecycle_active_days") }} days'
                then 'active'
            when
                last_activity_at > {{ as_of_timestamp() }} - interval '{{ var("lifecycle_at_risk_days") }} days'
                then 'at_risk'
            else 'churned'
        end as lifecycle_stage
    from activity

)

select * from final
