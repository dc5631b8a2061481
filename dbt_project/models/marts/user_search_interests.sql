{#-
    A full rebuild, not incremental: every weight decays relative to as_of,
    so every row changes each run (the table has one row per user and term,
    not per search, and grows with the vocabulary, not with time).
    recsys.search recomputes the same weights as of an evaluation cutoff.
-#}
{{
    config(
        indexes=[{'columns': ['user_id', 'term_rank'], 'unique': true}, {'columns': ['term']}]
    )
}}

with

searches as (

    select * from {{ ref('fct_searches') }}

),

users as (

    select * from {{ ref('dim_users') }}

),

items as (

    select * from {{ ref('dim_items') }}

),

personalized_searches as (

    select
        searches.search_id,
        searches.user_id,
        searches.query,
        power(
            cast(0.5 as double precision),
            extract(epoch from ({{ as_of_timestamp() }} - searches.searched_at))
            / 86400.0 / {{ var('interest_half_life_days') }}
        ) as decay
    from searches
    inner join users
        on searches.user_id = users.user_id
    where users.is_personalization_allowed and searches.searched_at <= {{ as_of_timestamp() }}

),

search_terms as (

    select
        personalized_searches.search_id,
        personalized_searches.user_id,
        tokens.token,
        personalized_searches.decay
    from personalized_searches
    cross join {{ search_tokens('personalized_searches.query') }} as tokens

),

category_tokens as (

    select distinct
        items.category,
        tokens.token
    from items
    cross join {{ search_tokens("concat_ws(' ', items.category_path, items.category)") }} as tokens

),

interests as (

    select
        search_id,
        user_id,
        'term:' || token as term,
        decay
    from search_terms
    union all
    select distinct
        search_terms.search_id,
        search_terms.user_id,
        'category:' || category_tokens.category as term,
        search_terms.decay
    from search_terms
    inner join category_tokens
        on search_terms.token = category_tokens.token

),

user_terms as (

    select
        user_id,
        term,
        count(*) as searches,
        sum(decay) as raw_weight
    from interests
    group by user_id, term

),

final as (

    select
        user_id,
        term,
        split_part(term, ':', 1) as term_type,
        cast(searches as integer) as searches,
        cast(raw_weight as double precision) as raw_weight,
        cast(raw_weight / max(raw_weight) over (partition by user_id) as double precision) as weight,
        cast(
            row_number() over (
                partition by user_id
                order by raw_weight desc, split_part(term, ':', 1) desc, term asc
            ) as integer
        ) as term_rank
    from user_terms

)

select * from final
