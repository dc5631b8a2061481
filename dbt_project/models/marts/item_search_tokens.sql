{{
    config(
        indexes=[{'columns': ['token']}, {'columns': ['item_id']}]
    )
}}

with

items as (

    select * from {{ ref('dim_items') }}

),

item_text as (

    select
        item_id,
        concat_ws(' ', item_name, category_path, category, brand) as search_text
    from items

),

final as (

    select
        item_text.item_id,
        tokens.token
    from item_text
    cross join {{ search_tokens('item_text.search_text') }} as tokens

)

select * from final
