with

model_search as (

    select * from {{ ref('stg_ml__model_search') }}

),

runs as (

    select * from {{ ref('stg_ml__runs') }}

),

final as (

    select
        model_search.run_id,
        model_search.model_name,
        model_search.trial,
        model_search.params,
        model_search.fit_seconds,
        model_search.ndcg,
        model_search.ndcg_new_items,
        model_search.ndcg_served,
        model_search.is_selected,
        model_search.is_selected and model_search.model_name = runs.champion_model as is_champion
    from model_search
    left join runs
        on model_search.run_id = runs.run_id

)

select * from final
