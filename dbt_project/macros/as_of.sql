{#-
    The end of the data interval (`as_of`) and the ml run being published
    (`run_id`): the var of that name (`--vars`), else the environment variable
    RECSYS_AS_OF or RECSYS_RUN_ID. The orchestrator passes the environment:
    dbt re-parses the whole project whenever `--vars` change, not when an
    environment variable read only at execution (`execute`) changes, so every
    daily run reuses the partial parse.
-#}
{% macro _run_setting(name, env_name) -%}
    {%- set value = var(name, none) -%}
    {%- if (value is none or (value | string | trim) == '') and execute -%}
        {%- set value = env_var(env_name, '') -%}
    {%- endif -%}
    {{- return(none if value is none or (value | string | trim) == '' else value | string) -}}
{%- endmacro %}

{#-
    `as_of` as a timestamptz literal. It is required when a model that uses it
    is run: there is no silent default, because "now" must come from the
    orchestrator, not the clock.
-#}
{% macro as_of_timestamp() -%}
    {%- set as_of = _run_setting('as_of', 'RECSYS_AS_OF') -%}
    {%- if as_of is none -%}
        {%- if execute -%}
            {{ exceptions.raise_compiler_error("as_of is required: set RECSYS_AS_OF=2026-11-01T00:00:00Z or --vars '{as_of: \"2026-11-01T00:00:00Z\"}'") }}
        {%- endif -%}
        cast(null as timestamp with time zone)
    {%- else -%}
        cast('{{ as_of | replace("'", "''") }}' as timestamp with time zone)
    {%- endif -%}
{%- endmacro %}

{#- `run_id` as a text literal; required for publish models. -#}
{% macro publish_run_id() -%}
    {%- set run_id = _run_setting('run_id', 'RECSYS_RUN_ID') -%}
    {%- if run_id is none -%}
        {%- if execute -%}
            {{ exceptions.raise_compiler_error("run_id is required for the publish models (tag:publish): set RECSYS_RUN_ID or --vars '{run_id: ...}', or exclude them with --exclude tag:publish") }}
        {%- endif -%}
        cast(null as text)
    {%- else -%}
        cast('{{ run_id | replace("'", "''") }}' as text)
    {%- endif -%}
{%- endmacro %}

{#-
    Whether the run's interval is a full-run day: RECSYS_FULL_RUN_DAYS (`all` by default, or weekday names
    like `sun` or `wed,sun`), the refit schedule of recsys.orchestration.schedule, on the weekday (UTC) of the
    daily interval ending at as_of. A SQL boolean: `true`, or a test of as_of's weekday. Read only at
    execution, like as_of (no re-parse when it changes).
-#}
{% macro is_full_run_day() -%}
    {%- set weekdays = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] -%}
    {%- set value = env_var('RECSYS_FULL_RUN_DAYS', 'all') if execute else 'all' -%}
    {%- set names = [] -%}
    {%- for name in value.lower().split(',') if name.strip() -%}
        {%- do names.append(name.strip()) -%}
    {%- endfor -%}
    {%- if names == [] or names == ['all'] -%}
        true
    {%- else -%}
        {%- set unknown = names | reject('in', weekdays) | list -%}
        {%- if unknown -%}
            {{ exceptions.raise_compiler_error("RECSYS_FULL_RUN_DAYS: " ~ unknown ~ " are not weekdays; use " ~ weekdays | join(', ') ~ " or all") }}
        {%- endif -%}
        extract(isodow from ({{ as_of_timestamp() }} - interval '1 day') at time zone 'UTC') in (
            {%- for name in names %}{{ weekdays.index(name) + 1 }}{{ ', ' if not loop.last }}{% endfor -%}
        )
    {%- endif -%}
{%- endmacro %}
