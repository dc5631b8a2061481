with

reviews as (

    select * from {{ ref('fct_reviews') }}

),

items as (

    select * from {{ ref('dim_items') }}

),

users as (

    select * from {{ ref('dim_users') }}

),

scored_reviews as (

    select
        reviews.user_id,
        items.category,
        reviews.rating,
        reviews.sentiment
    from reviews
    inner join items
        on reviews.item_id = items.item_id
    inner join users
        on reviews.user_id = users.user_id
    where users.is_personalization_allowed and reviews.sentiment is not null

),

final as (

    select
        user_id,
        category,
        cast(count(*) as integer) as reviews,
        cast(avg(sentiment) as double precision) as average_sentiment,
        cast(avg(rating) as double precision) as average_rating
    from scored_reviews
    group by user_id, category

)

select * from final
