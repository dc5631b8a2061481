{#-
    A full rebuild, like user_search_interests: every weight decays relative to as_of. The profile is the
    macro text_interests over item_text_terms, which the hook also creates as
    analytics.user_text_interests_as_of for reads at past cutoffs.
-#}
{{
    config(
        indexes=[{'columns': ['user_id', 'term_rank'], 'unique': true}, {'columns': ['term']}]
    )
}}

with

user_terms as (

    {{ text_interests(
        ref('fct_interactions'), ref('dim_users'), ref('item_text_terms'),
        as_of_timestamp(), var('interest_half_life_days'), var('text_interest_terms')
    ) }}

),

final as (

    select
        user_id,
        term,
        items,
        raw_weight,
        weight,
        term_rank
    from user_terms

)

select * from final
