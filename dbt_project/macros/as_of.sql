{#-
    The var `as_of` (end of the data interval) as a timestamptz literal.
    It is required when a model that uses it is run: there is no silent
    default, because "now" must come from the orchestrator, not the clock.
-#}
{% macro as_of_timestamp() -%}
    {%- set as_of = var('as_of', none) -%}
    {%- if as_of is none or (as_of | string | trim) == '' -%}
        {%- if execute -%}
            {{ exceptions.raise_compiler_error("var 'as_of' is required, e.g. --vars '{as_of: \"2026-11-01T00:00:00Z\"}'") }}
        {%- endif -%}
        cast(null as timestamp with time zone)
    {%- else -%}
        cast('{{ as_of | string | replace("'", "''") }}' as timestamp with time zone)
    {%- endif -%}
{%- endmacro %}

{#- The var `run_id` (the ml run being published) as a text literal; required for publish models. -#}
{% macro publish_run_id() -%}
    {%- set run_id = var('run_id', none) -%}
    {%- if run_id is none or (run_id | string | trim) == '' -%}
        {%- if execute -%}
            {{ exceptions.raise_compiler_error("var 'run_id' is required for the publish models (tag:publish); exclude them with --exclude tag:publish") }}
        {%- endif -%}
        cast(null as text)
    {%- else -%}
        cast('{{ run_id | string | replace("'", "''") }}' as text)
    {%- endif -%}
{%- endmacro %}
