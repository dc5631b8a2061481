with

cold_start_recommendations as (

    select * from {{ ref('stg_ml__cold_start_recommendations') }}

),

final as (

    select
        segment_key,
        item_rank,
        item_id,
        score,
        run_id
    from cold_start_recommendations
    where run_id = {{ publish_run_id() }}

)

select * from final
