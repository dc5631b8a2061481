{#-
    The one definition of what an incremental fact takes in a run, and how it stays equal to a full rebuild.

    A source row is taken when the table lacks its key (a new row, a late-arriving one whose user or item
    arrived since, or one of a user no longer flagged as a bot) or when it was loaded after the newest row
    already here (a re-delivered version of a row: delete+insert on the key replaces it). The anti-join is a
    left join (a hash join at any size), not a correlated `not exists`.

    Usage, in the CTE that reads the source (alias `source_alias`):

        from events
        {{ incremental_anti_join('event_id', 'events.event_id') }}
        where ... and {{ incremental_filter('events', 'event_id') }}

    In a full build the join is left out and the filter is `true`.
-#}
{% macro incremental_anti_join(key, source_key) -%}
    {%- if is_incremental() %}
    left join {{ this }} as existing_rows
        on {{ source_key }} = existing_rows.{{ key }}
    {%- endif -%}
{%- endmacro %}

{% macro incremental_filter(source_alias, key) -%}
    {%- if is_incremental() -%}
        (
            existing_rows.{{ key }} is null
            or {{ source_alias }}.loaded_at > (
                select coalesce(max(this_table.loaded_at), '-infinity') from {{ this }} as this_table
            )
        )
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#-
    Incremental base models (base_shop__events): whether `column` (a batch id) is a batch loaded since the model
    last ran, i.e. a delivery in quality.load_audit (batch, loaded_at: the load's transaction time, equal to the
    raw rows' _loaded_at) of which the model holds no row. The model's index on (batch_id, loaded_at) answers
    that per delivery, and the raw table's index on _batch_id reads the new rows. `true` in a full build, and
    with `incremental=false` (a model rebuilding an existing table in place).
-#}
{% macro is_batch_loaded_since_last_run(table_name, column='_batch_id', incremental=true) -%}
    {%- if is_incremental() and incremental -%}
        {{ column }} in (
            select batch_loads.batch_id
            from {{ source('loads', 'load_audit') }} as batch_loads
            where
                batch_loads.table_name = '{{ table_name }}'
                and not exists (
                    select from {{ this }} as this_table
                    where this_table.batch_id = batch_loads.batch_id and this_table.loaded_at = batch_loads.loaded_at
                )
        )
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#-
    Per-user incremental models (user_interest_tags): whether the user is recomputed in this run. A user is
    touched when `facts` holds a row of theirs inserted or moved since this model's last run (refreshed_at),
    or when this model has no row of theirs yet. `true` in a full build.
-#}
{% macro is_touched_user(user_column, facts) -%}
    {%- if is_incremental() -%}
        (
            not exists (select from {{ this }} as existing_rows where existing_rows.user_id = {{ user_column }})
            or {{ user_column }} in (
                select touched_rows.user_id
                from {{ facts }} as touched_rows
                where touched_rows.refreshed_at > (
                    select coalesce(max(this_table.refreshed_at), '-infinity') from {{ this }} as this_table
                )
            )
        )
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#-
    Post-hooks of the per-user incremental profiles (user_interest_tags, user_text_interests): delete the rows
    of users who no longer allow personalization or have no interactions (bots, accounts merged into another
    person), and the rows this run did not rewrite of users it touched (a touched user left with no row).
-#}
{% macro delete_rows_of_users_without_profile(users, interactions) -%}
    delete from {{ this }} as profile_rows
    where not exists (
        select from {{ users }} as users
        where users.user_id = profile_rows.user_id and users.is_personalization_allowed
    )
    or not exists (select from {{ interactions }} as events where events.user_id = profile_rows.user_id)
{%- endmacro %}

{% macro delete_stale_rows_of_touched_users(interactions) -%}
    delete from {{ this }} as profile_rows
    where profile_rows.refreshed_at < {{ refreshed_at() }}
      and exists (
          select from {{ interactions }} as events
          where events.user_id = profile_rows.user_id and events.refreshed_at = {{ refreshed_at() }}
      )
{%- endmacro %}

{#-
    When dbt last inserted or changed a row of an incremental model: the invocation's start, a wall-clock
    column like loaded_at. Downstream incremental models (user_interest_tags) recompute the users whose
    rows carry a newer value than their own newest.
-#}
{% macro refreshed_at() -%}
    cast('{{ run_started_at.isoformat() }}' as timestamp with time zone)
{%- endmacro %}

{#-
    Post-hook: delete the rows whose key the source no longer holds (a row now excluded in staging, an event
    after as_of on a re-run of an earlier interval, an order line of a deleted order), so an incremental
    table keeps no row a full rebuild would not have. With `written_column` (refreshed_at), the rows this
    run wrote are not looked up: they were just read from the source. A first build then reads its table
    once and looks nothing up (at L, the anti-join of 50M events with staging spilled its hash to disk); run
    it before any hook that stamps rows it did not write.
-#}
{% macro delete_rows_missing_from(source_relation, key, source_key=none, written_column=none) -%}
    delete from {{ this }} as target_rows
    where
        {% if written_column %}target_rows.{{ written_column }} < {{ refreshed_at() }} and {% endif %}not exists (
            select from {{ source_relation }} as source_rows
            where source_rows.{{ source_key or key }} = target_rows.{{ key }}
        )
{%- endmacro %}

{#-
    Whether `relation` has `column` (false while dbt parses). An incremental model whose later runs need a column its
    earlier versions did not write rebuilds an existing table without it in place, once (base_shop__social_edges).
-#}
{% macro has_column(relation, column) -%}
    {{ return(execute and column in (adapter.get_columns_in_relation(relation) | map(attribute='name') | list)) }}
{%- endmacro %}
