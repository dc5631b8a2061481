with

source as (

    select * from {{ source('ml', 'cold_start_recommendations') }}

),

final as (

    select
        cast(run_id as text) as run_id,
        cast(segment_key as text) as segment_key,
        cast(item_rank as integer) as item_rank,
        cast(item_id as text) as item_id,
        cast(score as double precision) as score
    from source

)

select * from final
