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

{#- `dbt run-operation install_search_tokens`: the function without building a model. -#}
{% macro install_search_tokens() %}
    {% do run_query(search_tokens_function()) %}
{% endmacro %}

{#- Used as `from ..., {{ search_tokens('column') }} as tokens (token)`. -#}
{% macro search_tokens(column) -%}
    lateral (select analytics.search_tokens({{ column }}) as token)
{%- endmacro %}
