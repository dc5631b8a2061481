{#-
    Incremental per user (delete+insert on user_id): a run recomputes only the
    users touched since the table's last run, i.e. with fct_interactions rows
    inserted or moved since (refreshed_at), plus personalized users with
    interactions but no tags here (an opt-in, a user no longer a bot).

    Time decay without recomputing everyone: each event's weight decays to the
    user's last interaction (last_interaction_at), not to as_of. Going on to
    as_of multiplies all the user's tags by the same factor 0.5 ^ (days from
    last_interaction_at to as_of / half-life), so weight (raw / the user's
    largest raw) and tag_rank do not depend on as_of, and an untouched user's
    rows stay exact; raw_weight as of any date is computed at read time from
    last_interaction_at. Sums are exact numeric sums, so an incremental run and
    a full rebuild publish the same rows.

    The post-hooks delete the tags of users no longer personalized or without
    interactions (bots, accounts merged into another person), and the stale
    tags of touched users left with none.
-#}
{{
    config(
        materialized='incremental',
        unique_key='user_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        indexes=[{'columns': ['user_id', 'tag_rank'], 'unique': true}, {'columns': ['tag']}],
        post_hook=[
            "{{ delete_rows_of_users_without_profile(ref('dim_users'), ref('fct_interactions')) }}",
            "{{ delete_stale_rows_of_touched_users(ref('fct_interactions')) }}",
        ]
    )
}}

with

-- not materialized: each reader's filter (touched users only) reaches fct_interactions' indexes
interactions as not materialized (

    select * from {{ ref('fct_interactions') }}

),

items as (

    select * from {{ ref('dim_items') }}

),

users as (

    select * from {{ ref('dim_users') }}

),

personalized_users as (

    select user_id
    from users
    where
        is_personalization_allowed
        and {{ is_touched_user('users.user_id', ref('fct_interactions')) }}

),

user_anchors as (

    select
        interactions.user_id,
        max(interactions.event_at) as last_interaction_at
    from interactions
    inner join personalized_users
        on interactions.user_id = personalized_users.user_id
    where interactions.event_at <= {{ as_of_timestamp() }}
    group by interactions.user_id

),

anchored_interactions as (

    select
        interactions.user_id,
        interactions.item_id,
        interactions.event_type,
        interactions.event_at,
        user_anchors.last_interaction_at
    from interactions
    inner join user_anchors
        on interactions.user_id = user_anchors.user_id

),

-- the one definition of decayed interest and of the tags (macros/profile.sql), shared with the
-- point-in-time function analytics.user_profile_features_as_of that the learned rankers read
decayed_user_items as (

    {{ decayed_user_items(
        'anchored_interactions', as_of_timestamp(), 'interactions.last_interaction_at',
        var('interest_half_life_days')
    ) }}

),

user_tags as (

    {{ user_tag_weights('decayed_user_items', 'items') }}

),

normalized as (

    select
        user_tags.user_id,
        user_tags.tag,
        user_tags.raw_weight,
        user_tags.raw_weight / max(user_tags.raw_weight) over (partition by user_tags.user_id) as weight,
        user_anchors.last_interaction_at
    from user_tags
    inner join user_anchors
        on user_tags.user_id = user_anchors.user_id
    where user_tags.raw_weight > 0

),

final as (

    select
        user_id,
        tag,
        split_part(tag, ':', 1) as tag_type,
        cast(weight as double precision) as weight,
        cast(
            row_number() over (
                partition by user_id
                order by
                    weight desc,
                    case split_part(tag, ':', 1) when 'category' then 1 when 'subcategory' then 2 else 3 end asc,
                    tag asc
            ) as integer
        ) as tag_rank,
        cast(raw_weight as double precision) as raw_weight,
        last_interaction_at,
        {{ refreshed_at() }} as refreshed_at
    from normalized

)

select * from final
