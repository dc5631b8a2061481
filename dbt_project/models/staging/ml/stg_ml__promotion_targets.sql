with

source as (

    select * from {{ source('ml', 'promotion_targets') }}

),

final as (

    select
        cast(run_id as text) as run_id,
        cast(promotion_id as text) as promotion_id,
        cast(user_id as text) as user_id,
        cast(target_rank as integer) as target_rank,
        cast(propensity as double precision) as propensity
    from source

)

select * from final
