{%- set tables = [
    'users', 'items', 'events', 'orders', 'order_lines', 'reviews', 'promotions', 'redemptions', 'social_edges'
] %}

with

base_users as (

    select * from {{ ref('base_shop__users') }}

),

staged_users as (

    select * from {{ ref('stg_shop__users') }}

),

base_items as (

    select * from {{ ref('base_shop__items') }}

),

staged_items as (

    select * from {{ ref('stg_shop__items') }}

),

base_events as (

    select * from {{ ref('base_shop__events') }}

),

staged_events as (

    select * from {{ ref('stg_shop__events') }}

),

base_orders as (

    select * from {{ ref('base_shop__orders') }}

),

staged_orders as (

    select * from {{ ref('stg_shop__orders') }}

),

base_order_lines as (

    select * from {{ ref('base_shop__order_lines') }}

),

staged_order_lines as (

    select * from {{ ref('stg_shop__order_lines') }}

),

base_reviews as (

    select * from {{ ref('base_shop__reviews') }}

),

staged_reviews as (

    select * from {{ ref('stg_shop__reviews') }}

),

base_promotions as (

    select * from {{ ref('base_shop__promotions') }}

),

staged_promotions as (

    select * from {{ ref('stg_shop__promotions') }}

),

base_redemptions as (

    select * from {{ ref('base_shop__redemptions') }}

),

staged_redemptions as (

    select * from {{ ref('stg_shop__redemptions') }}

),

base_social_edges as (

    select * from {{ ref('base_shop__social_edges') }}

),

staged_social_edges as (

    select * from {{ ref('stg_shop__social_edges') }}

),

excluded_rows as (

    select * from {{ ref('excluded_rows') }}

),

base_counts as (

    {% for table in tables %}
        select
            '{{ table }}' as source_table,
            count(*) as raw_rows,
            count(*) filter (where is_duplicate) as duplicate_rows
        from base_{{ table }}
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

staged_counts as (

    {% for table in tables %}
        select
            '{{ table }}' as source_table,
            {#- a staged user is a person: count the accounts stitched into it #}
            {% if table == 'users' %}coalesce(sum(account_count), 0){% else %}count(*){% endif %} as staged_rows
        from staged_{{ table }}
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

excluded_counts as (

    select
        source_table,
        count(*) as excluded_rows
    from excluded_rows
    group by source_table

),

final as (

    select
        base_counts.source_table,
        base_counts.raw_rows,
        staged_counts.staged_rows,
        coalesce(excluded_counts.excluded_rows, 0) as excluded_rows,
        base_counts.duplicate_rows,
        base_counts.raw_rows = staged_counts.staged_rows
        + coalesce(excluded_counts.excluded_rows, 0)
        + base_counts.duplicate_rows as is_reconciled
    from base_counts
    inner join staged_counts
        on base_counts.source_table = staged_counts.source_table
    left join excluded_counts
        on base_counts.source_table = excluded_counts.source_table

)

select * from final
