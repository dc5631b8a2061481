with

promotions as (

    select * from {{ ref('stg_shop__promotions') }}

),

final as (

    select
        promotion_id,
        promotion_name,
        promotion_type,
        discount_value,
        category,
        category is null as is_sitewide,
        starts_at,
        ends_at,
        case
            when ends_at <= {{ as_of_timestamp() }} then 'ended'
            when starts_at <= {{ as_of_timestamp() }} then 'running'
            else 'scheduled'
        end as promotion_status
    from promotions

)

select * from final
