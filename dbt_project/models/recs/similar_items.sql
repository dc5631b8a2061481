{#- The primary key (item_id, item_rank) serves the lookups by item. -#}
with

similar_items as (

    select * from {{ ref('stg_ml__similar_items') }}

),

final as (

    select
        item_id,
        item_rank,
        similar_item_id,
        score,
        run_id
    from similar_items
    where run_id = {{ publish_run_id() }}

)

select * from final
