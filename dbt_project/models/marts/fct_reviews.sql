{#-
    Incremental (delete+insert on review_id), like fct_interactions: a run
    inserts the reviews this table lacks and those loaded after its newest
    row, replacing any earlier version of the same review.
    The post-hooks keep the table equal to a full rebuild: reviews after
    as_of (a re-run for an earlier interval), reviews of users now flagged as
    bots, and reviews whose user or item has left dim_users / dim_items are
    deleted; every review's sentiment is set to its current score (a text
    scored after its review was inserted, or scored again, is caught up).
    An account that identity stitching joins to another person later has its
    earlier reviews moved to that person's user_id (first post-hook).
-#}
{{
    config(
        materialized='incremental',
        unique_key='review_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        indexes=[
            {'columns': ['user_id']},
            {'columns': ['item_id']},
            {'columns': ['reviewed_at']},
            {'columns': ['loaded_at']},
        ],
        post_hook=[
            "update {{ this }} as reviews set user_id = persons.person_user_id
             from {{ ref('identity_persons') }} as persons
             where reviews.account_user_id = persons.account_user_id
               and reviews.user_id <> persons.person_user_id",
            "delete from {{ this }} where reviewed_at > {{ as_of_timestamp() }}",
            "{{ delete_rows_missing_from(ref('stg_shop__reviews'), 'review_id') }}",
            "delete from {{ this }} as reviews using {{ ref('int_bot_users') }} as bot_users
             where reviews.user_id = bot_users.user_id",
            "delete from {{ this }} as reviews
             where not exists (select from {{ ref('dim_users') }} as users where users.user_id = reviews.user_id)
                or not exists (select from {{ ref('dim_items') }} as items where items.item_id = reviews.item_id)",
            "update {{ this }} as reviews set sentiment = current_scores.sentiment
             from (
                 select this_review.review_id, scores.sentiment
                 from {{ this }} as this_review
                 left join {{ ref('stg_features__review_sentiment') }} as scores
                     on this_review.review_id = scores.review_id
             ) as current_scores
             where reviews.review_id = current_scores.review_id
               and reviews.sentiment is distinct from current_scores.sentiment",
        ]
    )
}}

with

reviews as (

    select * from {{ ref('stg_shop__reviews') }}

),

bot_users as (

    select * from {{ ref('int_bot_users') }}

),

users as (

    select * from {{ ref('dim_users') }}

),

items as (

    select * from {{ ref('dim_items') }}

),

sentiment as (

    select * from {{ ref('stg_features__review_sentiment') }}

),

human_reviews as (

    select reviews.*
    from reviews
    left join bot_users
        on reviews.user_id = bot_users.user_id
    {{ incremental_anti_join('review_id', 'reviews.review_id') }}
    where
        bot_users.user_id is null
        and reviews.reviewed_at <= {{ as_of_timestamp() }}
        and {{ incremental_filter('reviews', 'review_id') }}

),

known_reviews as (

    select
        human_reviews.*,
        sentiment.sentiment
    from human_reviews
    inner join users
        on human_reviews.user_id = users.user_id
    inner join items
        on human_reviews.item_id = items.item_id
    left join sentiment
        on human_reviews.review_id = sentiment.review_id

),

final as (

    select
        review_id,
        user_id,
        account_user_id,
        item_id,
        cast(rating as integer) as rating,
        reviewed_at,
        cast(reviewed_at at time zone 'UTC' as date) as review_date,
        loaded_at,
        sentiment
    from known_reviews

)

select * from final
