{{
    config(
        indexes=[{'columns': ['user_id', 'placement']}, {'columns': ['item_id']}]
    )
}}

with

recommendations as (

    select * from {{ ref('stg_ml__recommendations') }}

),

final as (

    select
        user_id,
        placement,
        item_rank,
        item_id,
        score,
        model_name,
        reason_code,
        reason_text,
        run_id,
        generated_at
    from recommendations
    where run_id = {{ publish_run_id() }}

)

select * from final
