with

source as (

    select * from {{ source('ml', 'model_search') }}

),

final as (

    select
        cast(run_id as text) as run_id,
        cast(model_name as text) as model_name,
        cast(trial as integer) as trial,
        cast(params as text) as params,
        cast(fit_seconds as double precision) as fit_seconds,
        cast(ndcg as double precision) as ndcg,
        cast(ndcg_new_items as double precision) as ndcg_new_items,
        cast(ndcg_served as double precision) as ndcg_served,
        cast(is_selected as boolean) as is_selected
    from source

)

select * from final
