{#-
    Incremental (delete+insert on search_id), like fct_interactions: a run
    inserts the searches this table lacks and those loaded after its newest
    row; the post-hooks move an account's searches to its current person,
    delete searches staging no longer holds and those of users now flagged as
    bots, so the table equals a full rebuild.
-#}
{{
    config(
        materialized='incremental',
        unique_key='search_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        indexes=[{'columns': ['search_id'], 'unique': true}, {'columns': ['user_id']}, {'columns': ['loaded_at']}],
        post_hook=[
            "{{ delete_rows_missing_from(ref('stg_shop__events'), 'search_id', 'event_id', 'refreshed_at') }}",
            "update {{ this }} as searches set user_id = persons.person_user_id, refreshed_at = {{ refreshed_at() }}
             from {{ ref('identity_persons') }} as persons
             where searches.account_user_id = persons.account_user_id
               and searches.user_id <> persons.person_user_id",
            "delete from {{ this }} as searches using {{ ref('int_bot_users') }} as bot_users
             where searches.user_id = bot_users.user_id",
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

searches as (

    select events.*
    from events
    left join bot_users
        on events.user_id = bot_users.user_id
    {{ incremental_anti_join('search_id', 'events.event_id') }}
    where
        events.event_type = 'search'
        and bot_users.user_id is null
        and {{ incremental_filter('events', 'search_id') }}

),

final as (

    select
        event_id as search_id,
        user_id,
        account_user_id,
        query,
        event_at as searched_at,
        cast(event_at at time zone 'UTC' as date) as searched_date,
        session_id,
        platform,
        loaded_at,
        {{ refreshed_at() }} as refreshed_at
    from searches

)

select * from final
