{#-
    Keyed hash of a (trimmed) text expression: hex sha256 of
    '<RECSYS_PSEUDONYM_KEY>:<value>'. Null or empty input gives null.
    Uses Postgres' built-in sha256 (pgcrypto is not available).
    The key comes from the environment and never from committed files.
-#}
{% macro pseudonymize(column) -%}
    {%- set key = env_var('RECSYS_PSEUDONYM_KEY') | replace("'", "''") -%}
    encode(sha256(convert_to('{{ key }}' || ':' || nullif(trim({{ column }}), ''), 'UTF8')), 'hex')
{%- endmacro %}
