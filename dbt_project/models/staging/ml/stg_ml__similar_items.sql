with

source as (

    select * from {{ source('ml', 'similar_items') }}

),

final as (

    select
        cast(run_id as text) as run_id,
        cast(item_id as text) as item_id,
        cast(item_rank as integer) as item_rank,
        cast(similar_item_id as text) as similar_item_id,
        cast(score as double precision) as score
    from source

)

select * from final
