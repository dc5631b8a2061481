{{
    config(
        indexes=[{'columns': ['user_id']}]
    )
}}

with

promotion_targets as (

    select * from {{ ref('stg_ml__promotion_targets') }}

),

final as (

    select
        promotion_id,
        user_id,
        target_rank,
        propensity,
        run_id
    from promotion_targets
    where run_id = {{ publish_run_id() }}

)

select * from final
