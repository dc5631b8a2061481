with

source as (

    select * from {{ source('ml', 'runs') }}

),

final as (

    select
        cast(run_id as text) as run_id,
        cast(data_interval_start as timestamp with time zone) as data_interval_start,
        cast(data_interval_end as timestamp with time zone) as data_interval_end,
        cast(validation_cutoff_at as timestamp with time zone) as validation_cutoff_at,
        cast(eval_cutoff_at as timestamp with time zone) as eval_cutoff_at,
        cast(data_cutoff_at as timestamp with time zone) as data_cutoff_at,
        cast(started_at as timestamp with time zone) as started_at,
        cast(finished_at as timestamp with time zone) as finished_at,
        lower(trim(cast(status as text))) as status,
        cast(champion_model as text) as champion_model,
        cast(champion_reason as text) as champion_reason,
        cast(champion_params as text) as champion_params,
        cast(placement_champions as text) as placement_champions,
        cast(repeat_purchase_categories as text) as repeat_purchase_categories
    from source

)

select * from final
