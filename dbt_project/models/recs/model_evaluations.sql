with

model_evaluations as (

    select * from {{ ref('stg_ml__model_evaluations') }}

),

runs as (

    select * from {{ ref('stg_ml__runs') }}

),

final as (

    select
        model_evaluations.run_id,
        model_evaluations.model_name,
        model_evaluations.variant,
        model_evaluations.segment,
        model_evaluations.metric,
        model_evaluations.k,
        model_evaluations.metric_value,
        model_evaluations.model_name = runs.champion_model as is_champion,
        model_evaluations.run_id = {{ publish_run_id() }} as is_published_run
    from model_evaluations
    left join runs
        on model_evaluations.run_id = runs.run_id

)

select * from final
