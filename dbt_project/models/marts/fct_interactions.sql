{#-
    Incremental (delete+insert on event_id, macros/incremental.sql): a run
    inserts the events this table lacks (new, late-arriving, or of a user no
    longer flagged as a bot) and those loaded after its newest row, replacing
    any earlier version of the same event. The post-hooks keep the table equal
    to a full rebuild: events staging no longer holds (after as_of on a re-run
    of an earlier interval, now excluded) and events of users now flagged as
    bots are deleted.
    An account that identity stitching joins to another person later has its
    earlier events moved to that person's user_id (first post-hook).
    refreshed_at marks the rows inserted or moved by this run, for the
    profiles that recompute only the users touched since their last run
    (found by its index, not by reading every row).
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
            {'columns': ['refreshed_at']},
        ],
        post_hook=[
            "{{ delete_rows_missing_from(ref('stg_shop__events'), 'event_id', written_column='refreshed_at') }}",
            "update {{ this }} as interactions set user_id = persons.person_user_id, refreshed_at = {{ refreshed_at() }}
             from {{ ref('identity_persons') }} as persons
             where interactions.account_user_id = persons.account_user_id
               and interactions.user_id <> persons.person_user_id",
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
    {{ incremental_anti_join('event_id', 'events.event_id') }}
    where
        events.event_type in ('view', 'cart', 'remove_from_cart', 'purchase')
        and bot_users.user_id is null
        and {{ incremental_filter('events', 'event_id') }}

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
        loaded_at,
        {{ refreshed_at() }} as refreshed_at
    from item_events

)

select * from final
