with

runs as (

    select * from {{ ref('stg_ml__runs') }}

),

final as (

    select
        run_id,
        started_at,
        finished_at,
        case when run_id = {{ publish_run_id() }} then 'published' else status end as status,
        status as model_run_status,
        champion_model,
        champion_reason,
        champion_params,
        placement_champions,
        validation_cutoff_at,
        data_cutoff_at,
        eval_cutoff_at,
        data_interval_start,
        data_interval_end,
        run_id = {{ publish_run_id() }} as is_published,
        repeat_purchase_categories
    from runs

)

select * from final
