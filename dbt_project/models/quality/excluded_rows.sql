{{
    config(
        indexes=[{'columns': ['source_table', 'exclusion_reason']}]
    )
}}

{%- set tables = [
    'users', 'items', 'events', 'orders', 'order_lines', 'reviews', 'promotions', 'redemptions', 'social_edges'
] %}

with

users as (

    select * from {{ ref('base_shop__users') }}

),

items as (

    select * from {{ ref('base_shop__items') }}

),

events as (

    select * from {{ ref('base_shop__events') }}

),

orders as (

    select * from {{ ref('base_shop__orders') }}

),

order_lines as (

    select * from {{ ref('base_shop__order_lines') }}

),

reviews as (

    select * from {{ ref('base_shop__reviews') }}

),

promotions as (

    select * from {{ ref('base_shop__promotions') }}

),

redemptions as (

    select * from {{ ref('base_shop__redemptions') }}

),

social_edges as (

    select * from {{ ref('base_shop__social_edges') }}

),

unioned as (

    {% for table in tables %}
        select
            '{{ table }}' as source_table,
            record_key,
            batch_id,
            source_file,
            source_row_number,
            loaded_at,
            exclusion_reason
        from {{ table }}
        where exclusion_reason is not null
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

final as (

    select
        source_table,
        record_key,
        batch_id,
        source_file,
        source_row_number,
        loaded_at,
        exclusion_reason
    from unioned

)

select * from final
