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
    item weighted by its event weight decayed to the user's last interaction (as in user_interest_tags:
    weight and rank do not depend on as_of) and each token by its inverse document frequency over the
    listed items, ln(items / items with the token): a leaf word ("headphone") says more than a category
    word every item of the category has. Tokens of digits only (model numbers) are left out. weight = raw
    weight / the user's largest; the strongest max_terms terms per user are kept. The marts
    text_term_idf, item_text_terms and user_text_interests render the macros over their refs (the idf of
    the last full-run day); the hook creates them as the SQL function
    analytics.user_text_interests_as_of(as_of, half_life_days, max_terms) for reads at past cutoffs (the
    idf at that as_of).

    text_interests runs user by user (a lateral join): each user's events by fct_interactions' index on
    user_id (read once: their last one, the decay's anchor, is a window over them; a separate max(event_at)
    per user was planned as a backward scan of the index on event_at, 360 s instead of 3 s for 3,800
    invoice customers), their items' terms by an index on item_id of item_terms, the user's terms grouped and ranked
    in memory. Grouped for every user at once, the user x item x token rows spilled more than 21 GB of
    temporary files at a million users. Sums are exact numeric sums, so the order rows arrive in never
    moves a rank.
-#}

{#-
    The idf of every token of the items listed at as_of (token, items, idf): ln(items listed / items with the
    token), tokens of digits only and tokens of every item left out. The model text_term_idf stores it, refitted
    on full-run days (macro is_full_run_day).
-#}
{% macro text_vocabulary(items, item_tokens, as_of) %}
    with listed_tokens as (
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
    )

    select
        listed_tokens.token,
        count(*) as items,
        ln(cast(max(listed_items.items) as double precision) / count(*)) as idf
    from listed_tokens
    cross join listed_items
    group by listed_tokens.token
    having count(*) < max(listed_items.items)
{% endmacro %}

{#-
    The tokens of the items listed at as_of with their idf (item_id, token, idf): the idf of `vocabulary` (a
    relation with token and idf: tokens it lacks are left out), or without it the idf at as_of.
-#}
{% macro text_item_terms(items, item_tokens, as_of, vocabulary=none) %}
    with vocabulary as (
        {% if vocabulary is none %}{{ text_vocabulary(items, item_tokens, as_of) }}{% else %}select * from {{ vocabulary }}{% endif %}
    )

    select
        item_tokens.item_id,
        item_tokens.token,
        vocabulary.idf
    from {{ item_tokens }} as item_tokens
    inner join {{ items }} as items on item_tokens.item_id = items.item_id
    inner join vocabulary on item_tokens.token = vocabulary.token
    where items.created_at is null or items.created_at <= {{ as_of }}
{% endmacro %}

{#- The profile, reading each item's terms from item_terms (text_item_terms' rows, indexed on item_id). -#}
{% macro text_interests(interactions, users, item_terms, as_of, half_life_days, max_terms) %}
    select
        users.user_id,
        ranked_terms.term,
        cast(ranked_terms.items as integer) as items,
        cast(ranked_terms.raw_weight as double precision) as raw_weight,
        cast(ranked_terms.raw_weight / ranked_terms.top_weight as double precision) as weight,
        cast(ranked_terms.term_rank as integer) as term_rank,
        ranked_terms.last_interaction_at
    from {{ users }} as users
    cross join lateral (
        select
            user_terms.term,
            user_terms.items,
            user_terms.raw_weight,
            user_terms.last_interaction_at,
            max(user_terms.raw_weight) over () as top_weight,
            row_number() over (order by user_terms.raw_weight desc, user_terms.term asc) as term_rank
        from (
            select
                item_terms.token as term,
                count(*) as items,
                sum(user_items.decayed_weight * cast(item_terms.idf as numeric)) as raw_weight,
                max(user_items.last_interaction_at) as last_interaction_at
            from (
                select
                    user_events.item_id,
                    max(user_events.last_interaction_at) as last_interaction_at,
                    sum(cast(
                        {{ event_weight('user_events.event_type') }}
                        * power(
                            cast(0.5 as double precision),
                            extract(epoch from (user_events.last_interaction_at - user_events.event_at)) / 86400.0
                            / {{ half_life_days }}
                        ) as numeric
                    )) as decayed_weight
                from (
                    -- the user's events, read once by the index on user_id, and the last of them (the anchor)
                    select
                        interactions.item_id,
                        interactions.event_type,
                        interactions.event_at,
                        max(interactions.event_at) over () as last_interaction_at
                    from {{ interactions }} as interactions
                    where interactions.user_id = users.user_id and interactions.event_at <= {{ as_of }}
                ) as user_events
                group by user_events.item_id
            ) as user_items
            inner join {{ item_terms }} as item_terms on user_items.item_id = item_terms.item_id
            where user_items.decayed_weight > 0
            group by item_terms.token
        ) as user_terms
    ) as ranked_terms
    where users.is_personalization_allowed and ranked_terms.term_rank <= {{ max_terms }}
{% endmacro %}

{#- The function computes the item terms at its as_of into a temporary table with the index the lookups need. -#}
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
    language plpgsql volatile
    as $fn$
    #variable_conflict use_column
    begin
        drop table if exists pg_temp.text_item_terms_as_of;
        create temporary table text_item_terms_as_of as
        {{ text_item_terms('analytics.dim_items', 'analytics.item_search_tokens', 'as_of') }};
        create index on pg_temp.text_item_terms_as_of (item_id);
        analyze pg_temp.text_item_terms_as_of;
        return query
        select terms.user_id, terms.term, terms.items, terms.raw_weight, terms.weight, terms.term_rank
        from (
            {{ text_interests(
                'analytics.fct_interactions', 'analytics.dim_users', 'pg_temp.text_item_terms_as_of',
                'as_of', 'half_life_days', 'max_terms'
            ) }}
        ) as terms;
    end
    $fn$;
end
$body$
{% endmacro %}

{#- `dbt run-operation install_text_functions`: the sentiment table and the text-interest function without a model. -#}
{% macro install_text_functions() %}
    {% do run_query(review_sentiment_table()) %}
    {% do run_query(text_interests_function()) %}
{% endmacro %}
