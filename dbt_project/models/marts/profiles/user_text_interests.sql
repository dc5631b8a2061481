{#-
    Incremental per user (delete+insert on user_id), like user_interest_tags: a run recomputes the users
    touched since its last run (macro is_touched_user) against the idf of text_term_idf, and every user when
    that idf was refitted since (rows older than the fit). Each event's weight decays to the user's last
    interaction, so weight and term_rank do not depend on as_of and an untouched user's rows stay exact
    between fits; raw_weight as of a date is computed at read time from last_interaction_at. The profile is
    the macro text_interests over item_text_terms (at past cutoffs: the function
    analytics.user_text_interests_as_of, with the idf at that cutoff).

    The post-hooks delete the rows of users no longer personalized or without interactions, the stale rows
    of touched users left with no term, and every row older than the idf's fit. A table built before this model
    was incremental gets its new columns from the pre-hook, null, so its first run recomputes every user.
-#}
{{
    config(
        materialized='incremental',
        unique_key='user_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        indexes=[{'columns': ['user_id', 'term_rank'], 'unique': true}, {'columns': ['term']}],
        pre_hook=[
            "{% if is_incremental() %}
             alter table {{ this }}
                 add column if not exists last_interaction_at timestamp with time zone,
                 add column if not exists refreshed_at timestamp with time zone
             {% endif %}",
        ],
        post_hook=[
            "{{ delete_rows_of_users_without_profile(ref('dim_users'), ref('fct_interactions')) }}",
            "{{ delete_stale_rows_of_touched_users(ref('fct_interactions')) }}",
            "delete from {{ this }}
             where refreshed_at is null or refreshed_at < (select max(fitted_at) from {{ ref('text_term_idf') }})",
        ]
    )
}}

with

recomputed_users as (

    select
        user_rows.user_id,
        user_rows.is_personalization_allowed
    from {{ ref('dim_users') }} as user_rows
    where
        user_rows.is_personalization_allowed
        {% if is_incremental() %}
            and (
                {{ is_touched_user('user_rows.user_id', ref('fct_interactions')) }}
                -- rows computed with an earlier idf: every user again
                or exists (
                    select from {{ this }} as terms
                    where
                        terms.refreshed_at is null
                        or terms.refreshed_at < (select max(fits.fitted_at) from {{ ref('text_term_idf') }} as fits)
                )
            )
        {% endif %}

),

user_terms as (

    {{ text_interests(
        ref('fct_interactions'), 'recomputed_users', ref('item_text_terms'),
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
        term_rank,
        last_interaction_at,
        {{ refreshed_at() }} as refreshed_at
    from user_terms

)

select * from final
