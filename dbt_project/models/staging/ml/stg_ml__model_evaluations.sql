with

source as (

    select * from {{ source('ml', 'model_evaluations') }}

),

final as (

    select
        cast(run_id as text) as run_id,
        cast(model_name as text) as model_name,
        cast(variant as text) as variant,
        cast(segment as text) as segment,
        lower(trim(cast(metric as text))) as metric,
        cast(k as integer) as k,
        cast(metric_value as double precision) as metric_value
    from source

)

select * from final
