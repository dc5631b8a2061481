{#-
    Keyed hash of a (trimmed) text expression: hex sha256 of '<key>:<value>'; null or empty input gives
    null. The key is read from the table keystore.pseudonym_key (a scalar subquery, evaluated once per
    query), where the loader stored it (recsys.db.keystore): it never becomes SQL text, so it is not in
    compiled SQL, target/, logs or the database's statement views. Postgres' built-in sha256 (no pgcrypto).
-#}
{% macro pseudonymize(column) -%}
    encode(sha256(convert_to((select key from keystore.pseudonym_key) || ':' || nullif(trim({{ column }}), ''), 'UTF8')), 'hex')
{%- endmacro %}
