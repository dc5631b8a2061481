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

{#-
    Post-hook of a base model: a unique index on `column` over the rows staging keeps (valid, not a duplicate), so
    Postgres refuses a second kept version of a key when the model writes it. It replaces a dbt `unique` test of the
    staging view, which read every row after each build (1.5 s a day at M for stg_shop__events). A partial index,
    which dbt's `indexes` config cannot declare; created when the table has none (its first build, a full
    refresh, an existing warehouse's next run), named by Postgres.
-#}
{% macro unique_index_of_kept_rows(column) -%}
    {{ index_if_missing([column], unique=true, where='exclusion_reason is null and not is_duplicate') }}
{%- endmacro %}

{#-
    Post-hook: an index on `columns` (in that order; `unique`, partial with `where`) unless the table has one like
    it: for an index dbt's `indexes` config cannot declare (a partial one), or that a table from before the model
    declared it lacks (the config builds indexes only with a new table). Named by Postgres, so a full refresh's
    backup table, which still holds the old one under its name, never blocks it.
-#}
{% macro index_if_missing(columns, unique=false, where=none) -%}
    do $$
    begin
        if not exists (
            select from pg_index as indexes
            where
                indexes.indrelid = '"{{ this.schema }}"."{{ this.identifier }}"'::regclass
                and indexes.indisunique = {{ unique }}
                and (indexes.indpred is not null) = {{ where is not none }}
                and array(
                    select attributes.attname::text
                    from unnest(indexes.indkey::int2[]) with ordinality as keys (attnum, position)
                    inner join pg_attribute as attributes
                        on attributes.attrelid = indexes.indrelid and attributes.attnum = keys.attnum
                    order by keys.position
                ) = array[{% for column in columns %}'{{ column }}'{{ ", " if not loop.last }}{% endfor %}]::text[]
        ) then
            create {{ 'unique ' if unique }}index on {{ this }} ({{ columns | join(', ') }}){{ ' where ' ~ where if where }};
        end if;
    end
    $$
{%- endmacro %}
