{{
    config(
        indexes=[{'columns': ['search_id'], 'unique': true}, {'columns': ['user_id']}]
    )
}}

with

events as (

    select * from {{ ref('stg_shop__events') }}

),

bot_users as (

    select * from {{ ref('int_bot_users') }}

),

searches as (

    select events.*
    from events
    left join bot_users
        on events.user_id = bot_users.user_id
    where events.event_type = 'search' and bot_users.user_id is null

),

final as (

    select
        event_id as search_id,
        user_id,
        query,
        event_at as searched_at,
        cast(event_at at time zone 'UTC' as date) as searched_date,
        session_id,
        platform
    from searches

)

select * from final
