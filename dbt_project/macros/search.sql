{#-
    The search tokenizer, defined once: the SQL function analytics.search_tokens(text), created by the
    on-run-start hook (dbt_project.yml) and called both by the dbt models (macro search_tokens) and by
    recsys.usecases.search for queries. Tokens of free text: lower-cased, split on everything but
    letters and digits, tokens of at least 2 characters, plural endings stripped ("dresses" -> "dress",
    "kettles" -> "kettle", "glass" stays). The advisory lock keeps parallel dbt invocations from
    replacing the function at the same time.
-#}
{% macro search_tokens_function() %}
do $body$
begin
    perform pg_advisory_xact_lock(hashtext('recsys.search_tokens'));
    create schema if not exists analytics;
    create or replace function analytics.search_tokens(input text) returns setof text
    language sql immutable parallel safe
    as $fn$
        select distinct
            case
                when length(raw_token) >= 4
                    then regexp_replace(regexp_replace(raw_token, '(ss|x|ch|sh)es$', '\1'), '([^s])s$', '\1')
                else raw_token
            end
        from regexp_split_to_table(lower(input), '[^[:alnum:]]+') as raw_token
        where length(raw_token) >= 2
    $fn$;
end
$body$
{% endmacro %}

{#-
    The search-interest profile, defined once: one row per user who allows personalization and term of
    their searches up to as_of, with the decayed weight. The mart user_search_interests renders it over its
    refs; the on-run-start hook renders it over the same tables as the SQL function
    analytics.user_search_interests_as_of(as_of, half_life_days), which recsys.usecases.search calls at
    past cutoffs (point in time, for evaluation). The function's body is checked when it is called, not
    when it is created: the tables it reads are built later in the first run.
-#}
{% macro search_interests(searches, users, items, as_of, half_life_days) %}
    with personalized_searches as (
        select
            searches.search_id,
            searches.user_id,
            searches.query,
            power(
                cast(0.5 as double precision),
                extract(epoch from ({{ as_of }} - searches.searched_at)) / 86400.0 / {{ half_life_days }}
            ) as decay
        from {{ searches }} as searches
        inner join {{ users }} as users on searches.user_id = users.user_id
        where users.is_personalization_allowed and searches.searched_at <= {{ as_of }}
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
        from {{ items }} as items
        cross join {{ search_tokens("concat_ws(' ', items.category_path, items.category)") }} as tokens
    ),

    interests as (
        select
            search_terms.search_id,
            search_terms.user_id,
            'term:' || search_terms.token as term,
            search_terms.decay
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
            interests.user_id,
            interests.term,
            count(*) as searches,
            sum(interests.decay) as raw_weight
        from interests
        group by interests.user_id, interests.term
    )

    select
        user_terms.user_id,
        user_terms.term,
        user_terms.searches,
        cast(user_terms.raw_weight as double precision) as raw_weight,
        cast(
            user_terms.raw_weight / max(user_terms.raw_weight) over (partition by user_terms.user_id)
            as double precision
        ) as weight
    from user_terms
{% endmacro %}

{% macro search_interests_function() %}
do $body$
begin
    perform pg_advisory_xact_lock(hashtext('recsys.search_tokens'));
    set local check_function_bodies = off;
    create or replace function analytics.user_search_interests_as_of(
        as_of timestamptz, half_life_days double precision
    ) returns table (user_id text, term text, searches bigint, raw_weight double precision, weight double precision)
    language sql stable
    as $fn$
        {{ search_interests('analytics.fct_searches', 'analytics.dim_users', 'analytics.dim_items', 'as_of', 'half_life_days') }}
    $fn$;
end
$body$
{% endmacro %}

{#- `dbt run-operation install_search_tokens`: the search functions without building a model. -#}
{% macro install_search_tokens() %}
    {% do run_query(search_tokens_function()) %}
    {% do run_query(search_interests_function()) %}
{% endmacro %}

{#- Used as `from ..., {{ search_tokens('column') }} as tokens (token)`. -#}
{% macro search_tokens(column) -%}
    lateral (select analytics.search_tokens({{ column }}) as token)
{%- endmacro %}
