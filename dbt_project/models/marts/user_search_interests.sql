{#-
    A full rebuild, not incremental: every weight decays relative to as_of,
    so every row changes each run (the table has one row per user and term,
    not per search, and grows with the vocabulary, not with time).
    The profile is the macro search_interests, which recsys.usecases.search also
    calls, as the function analytics.user_search_interests_as_of, at an evaluation cutoff.
-#}
{{
    config(
        indexes=[{'columns': ['user_id', 'term_rank'], 'unique': true}, {'columns': ['term']}]
    )
}}

with

user_terms as (

    {{ search_interests(
        ref('fct_searches'), ref('dim_users'), ref('dim_items'),
        as_of_timestamp(), var('interest_half_life_days')
    ) }}

),

final as (

    select
        user_id,
        term,
        split_part(term, ':', 1) as term_type,
        cast(searches as integer) as searches,
        raw_weight,
        weight,
        cast(
            row_number() over (
                partition by user_id
                order by raw_weight desc, split_part(term, ':', 1) desc, term asc
            ) as integer
        ) as term_rank
    from user_terms

)

select * from final
