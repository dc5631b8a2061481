with

base as (

    select * from {{ ref('base_shop__events') }}

),

final as (

    select
        event_id,
        shop_event_id,
        user_id,
        item_id,
        event_type,
        event_at,
        session_id,
        platform,
        query,
        quantity,
        price,
        batch_id,
        loaded_at
    from base
    where exclusion_reason is null and not is_duplicate

)

select * from final
