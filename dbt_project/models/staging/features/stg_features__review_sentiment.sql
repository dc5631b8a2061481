with

sentiment as (

    select * from {{ source('features', 'review_sentiment') }}

),

reviews as (

    select * from {{ ref('stg_shop__reviews') }}

),

-- only the score of each review's current text: a text changed since scoring has no score until rescored
current_scores as (

    select
        sentiment.review_id,
        sentiment.compound,
        sentiment.positive,
        sentiment.negative,
        sentiment.neutral,
        sentiment.lexicon,
        sentiment.scored_at
    from sentiment
    inner join reviews
        on
            sentiment.review_id = reviews.review_id
            and sentiment.text_md5 = md5(reviews.review_text)

),

final as (

    select
        review_id,
        cast(compound as double precision) as sentiment,
        cast(positive as double precision) as positive_share,
        cast(negative as double precision) as negative_share,
        cast(neutral as double precision) as neutral_share,
        lexicon,
        scored_at
    from current_scores

)

select * from final
