{#-
    Incremental (delete+insert on event_id): a run inserts the events loaded
    since the last run or newer than the newest event already here, replacing
    any earlier version of the same event. The post-hooks keep the table equal
    to a full rebuild: events after as_of (a re-run for an earlier interval)
    and events of users now flagged as bots are deleted.
    An account that identity stitching joins to another person later has its
    earlier events moved to that person's user_id (first post-hook).
-#}
{{
    config(
        materialized='incremental',
        unique_key='event_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        indexes=[
            {'columns': ['user_id']},
            {'columns': ['item_id']},
            {'columns': ['event_at']},
            {'columns': ['loaded_at']},
        ],
        post_hook=[
            "update {{ this }} as interactions set user_id = persons.person_user_id
             from {{ ref('identity_persons') }} as persons
             where interactions.account_user_id = persons.account_user_id
               and interactions.user_id <> persons.person_user_id",
            "delete from {{ this }} where event_at > {{ as_of_timestamp() }}",
            "delete from {{ this }} as interactions using {{ ref('int_bot_users') }} as bot_users
             where interactions.user_id = bot_users.user_id",
        ]
    )
}}

with

events as (

    select * from {{ ref('stg_shop__events') }}

),

bot_users as (

    select * from {{ ref('int_bot_users') }}

),

item_events as (

    select events.*
    from events
    left join bot_users
        on events.user_id = bot_users.user_id
    where
        events.event_type in ('view', 'cart', 'remove_from_cart', 'purchase')
        and bot_users.user_id is null
        {% if is_incremental() %}
            and (
                events.loaded_at > (
                    select coalesce(max(this_table.loaded_at), '-infinity') from {{ this }} as this_table
                )
                or events.event_at > (
                    select coalesce(max(this_table.event_at), '-infinity') from {{ this }} as this_table
                )
            )
        {% endif %}

),

final as (

    select
        event_id,
        user_id,
        account_user_id,
        item_id,
        event_type,
        event_at,
        cast(event_at at time zone 'UTC' as date) as event_date,
        session_id,
        platform,
        cast(quantity as bigint) as quantity,
        cast(price as numeric) as price,
        loaded_at
    from item_events

)

select * from final
