{#-
    Project-wide hooks (dbt_project.yml). Each model is built in one
    transaction, so `set local` only affects that model's statements.
-#}

{#- Give the big sorts and hash aggregates of a model var `model_work_mem` (default 128MB) instead of the server default. -#}
{% macro set_model_work_mem() -%}
    set local work_mem = '{{ var("model_work_mem", "128MB") | replace("'", "") }}'
{%- endmacro %}

{#-
    Fresh planner statistics for a table dbt built, so the next model joins it with sane plans. An incremental
    table is analyzed when it is new (never analyzed: reltuples -1) or when this run inserted, updated or deleted
    more than a tenth of its rows (the counts of the model's own transaction; autovacuum's threshold,
    autovacuum_analyze_scale_factor 0.1): a day's rows in a 90-day table move no statistic the planner uses, and
    analyzing every incremental table every day read a sample of each (about 1.5 s a day at M).
-#}
{% macro analyze_relation() -%}
    {%- if model.config.materialized == 'table' -%}
        analyze {{ this }}
    {%- elif model.config.materialized == 'incremental' -%}
        do $$
        begin
            if (
                select
                    tables.reltuples < 0
                    or pg_stat_get_xact_tuples_inserted(tables.oid) + pg_stat_get_xact_tuples_updated(tables.oid)
                    + pg_stat_get_xact_tuples_deleted(tables.oid) > 0.1 * tables.reltuples
                from pg_class as tables
                where tables.oid = '"{{ this.schema }}"."{{ this.identifier }}"'::regclass
            ) then
                analyze {{ this }};
            end if;
        end
        $$
    {%- else -%}
        select 1 as no_statistics_for_views
    {%- endif -%}
{%- endmacro %}
