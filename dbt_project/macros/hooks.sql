{#-
    Project-wide hooks (dbt_project.yml). Each model is built in one
    transaction, so `set local` only affects that model's statements.
-#}

{#- Give the big sorts and hash aggregates of a model var `model_work_mem` (default 128MB) instead of the server default. -#}
{% macro set_model_work_mem() -%}
    set local work_mem = '{{ var("model_work_mem", "128MB") | replace("'", "") }}'
{%- endmacro %}

{#- Fresh planner statistics for tables and incremental tables, so the next model joins them with sane plans. -#}
{% macro analyze_relation() -%}
    {%- if model.config.materialized in ['table', 'incremental'] -%}
        analyze {{ this }}
    {%- else -%}
        select 1 as no_statistics_for_views
    {%- endif -%}
{%- endmacro %}
