{#-
    Text signals of the profiles: review sentiment (scored in Python) and text interest terms (from the
    search tokens of the items a user interacted with).
-#}

{#-
    ml.review_sentiment: VADER scores of review texts, written by recsys.features.sentiment (the
    score_review_sentiment task, new or changed texts only) and read by the mart
    user_category_sentiment through stg_features__review_sentiment. Created here, by the on-run-start
    hook, so that a warehouse which never ran the scorer reads no sentiment instead of failing.
-#}
{% macro review_sentiment_table() %}
do $body$
begin
    perform pg_advisory_xact_lock(hashtext('recsys.review_sentiment'));
    create schema if not exists ml;
    create table if not exists ml.review_sentiment (
        review_id text primary key,
        text_md5 text not null,
        compound double precision not null check (compound between -1 and 1),
        positive double precision not null,
        negative double precision not null,
        neutral double precision not null,
        lexicon text not null,
        scored_at timestamptz not null default now()
    );
end
$body$
{% endmacro %}

{#-
    The text-interest profile, defined once: per user who allows personalization, the search tokens
    (macro search_tokens, via item_search_tokens) of the items they interacted with up to as_of, each
    item weighted by its decayed event weight (the same decay as user_interest_tags) and each token by
    its inverse document frequency over the items listed at as_of, ln(items / items with the token):
    a leaf word ("headphone") says more than a category word every item of the category has. Tokens of
    digits only (model numbers) are left out. weight = raw weight / the user's largest; the strongest
    max_terms terms per user are kept. The mart user_text_interests renders it over its refs; the hook
    creates it as the SQL function analytics.user_text_interests_as_of(as_of, half_life_days, max_terms)
    for the learned rankers at past cutoffs (point in time).
-#}
{% macro text_interests(interactions, users, items, item_tokens, as_of, half_life_days, max_terms) %}
    with decayed_user_items as (
        select
            interactions.user_id,
            interactions.item_id,
            sum(
                {{ event_weight('interactions.event_type') }}
                * power(
                    cast(0.5 as double precision),
                    extract(epoch from ({{ as_of }} - interactions.event_at)) / 86400.0 / {{ half_life_days }}
                )
            ) as decayed_weight
        from {{ interactions }} as interactions
        inner join {{ users }} as users on interactions.user_id = users.user_id
        where users.is_personalization_allowed and interactions.event_at <= {{ as_of }}
        group by interactions.user_id, interactions.item_id
    ),

    listed_tokens as (
        select
            item_tokens.item_id,
            item_tokens.token
        from {{ item_tokens }} as item_tokens
        inner join {{ items }} as items on item_tokens.item_id = items.item_id
        where (items.created_at is null or items.created_at <= {{ as_of }}) and item_tokens.token !~ '^[0-9]+$'
    ),

    listed_items as (
        select count(distinct listed_tokens.item_id) as items
        from listed_tokens
    ),

    token_idf as (
        select
            listed_tokens.token,
            ln(cast(max(listed_items.items) as double precision) / count(*)) as idf
        from listed_tokens
        cross join listed_items
        group by listed_tokens.token
        having count(*) < max(listed_items.items)
    ),

    user_terms as (
        select
            decayed_user_items.user_id,
            listed_tokens.token as term,
            count(*) as items,
            sum(decayed_user_items.decayed_weight * token_idf.idf) as raw_weight
        from decayed_user_items
        inner join listed_tokens on decayed_user_items.item_id = listed_tokens.item_id
        inner join token_idf on listed_tokens.token = token_idf.token
        where decayed_user_items.decayed_weight > 0
        group by decayed_user_items.user_id, listed_tokens.token
    ),

    ranked_terms as (
        select
            user_terms.user_id,
            user_terms.term,
            user_terms.items,
            user_terms.raw_weight,
            user_terms.raw_weight / max(user_terms.raw_weight) over (partition by user_terms.user_id) as weight,
            row_number() over (
                partition by user_terms.user_id order by user_terms.raw_weight desc, user_terms.term asc
            ) as term_rank
        from user_terms
    )

    select
        ranked_terms.user_id,
        ranked_terms.term,
        cast(ranked_terms.items as integer) as items,
        cast(ranked_terms.raw_weight as double precision) as raw_weight,
        cast(ranked_terms.weight as double precision) as weight,
        cast(ranked_terms.term_rank as integer) as term_rank
    from ranked_terms
    where ranked_terms.term_rank <= {{ max_terms }}
{% endmacro %}

{% macro text_interests_function() %}
do $body$
begin
    perform pg_advisory_xact_lock(hashtext('recsys.search_tokens'));
    set local check_function_bodies = off;
    create or replace function analytics.user_text_interests_as_of(
        as_of timestamptz, half_life_days double precision, max_terms integer
    ) returns table (
        user_id text, term text, items integer, raw_weight double precision, weight double precision,
        term_rank integer
    )
    language sql stable
    as $fn$
        {{ text_interests(
            'analytics.fct_interactions', 'analytics.dim_users', 'analytics.dim_items',
            'analytics.item_search_tokens', 'as_of', 'half_life_days', 'max_terms'
        ) }}
    $fn$;
end
$body$
{% endmacro %}

{#- `dbt run-operation install_text_functions`: the sentiment table and the text-interest function without a model. -#}
{% macro install_text_functions() %}
    {% do run_query(review_sentiment_table()) %}
    {% do run_query(text_interests_function()) %}
{% endmacro %}
