{#-
    Search tokens of free text: lower-cased, split on everything but letters
    and digits, tokens of at least 2 characters, plural endings stripped
    ("dresses" -> "dress", "kettles" -> "kettle", "glass" stays). Used as
    `from ..., {{ search_tokens('column') }} as tokens (token)`.
    recsys.search.TOKEN_SQL is the same expression for queries: keep them equal.
-#}
{% macro search_tokens(column) -%}
    lateral (
        select distinct
            case
                when length(raw_token) >= 4
                    then regexp_replace(regexp_replace(raw_token, '(ss|x|ch|sh)es$', '\1'), '([^s])s$', '\1')
                else raw_token
            end as token
        from regexp_split_to_table(lower({{ column }}), '[^[:alnum:]]+') as raw_token
        where length(raw_token) >= 2
    )
{%- endmacro %}
