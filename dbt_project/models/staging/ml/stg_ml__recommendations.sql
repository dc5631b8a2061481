with

source as (

    select * from {{ source('ml', 'recommendations') }}

),

final as (

    select
        cast(run_id as text) as run_id,
        cast(user_id as text) as user_id,
        cast(placement as text) as placement,
        cast(item_rank as integer) as item_rank,
        cast(item_id as text) as item_id,
        cast(score as double precision) as score,
        cast(model_name as text) as model_name,
        cast(reason_code as text) as reason_code,
        cast(reason_text as text) as reason_text,
        cast(generated_at as timestamp with time zone) as generated_at
    from source

)

select * from final
