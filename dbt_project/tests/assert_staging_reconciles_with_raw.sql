-- raw_rows of quality.staging_reconciliation equal the row counts of the raw tables themselves.
{%- set tables = [
    'users', 'items', 'events', 'orders', 'order_lines', 'reviews', 'promotions', 'redemptions', 'social_edges'
] %}

with

reconciliation as (

    select * from {{ ref('staging_reconciliation') }}

),

raw_counts as (

    {% for table in tables %}
        select
            '{{ table }}' as source_table,
            count(*) as raw_rows
        from {{ source('shop', table) }}
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

)

select
    raw_counts.source_table,
    raw_counts.raw_rows,
    reconciliation.raw_rows as reconciled_raw_rows
from raw_counts
left join reconciliation
    on raw_counts.source_table = reconciliation.source_table
where reconciliation.raw_rows is distinct from raw_counts.raw_rows
    or not reconciliation.is_reconciled
