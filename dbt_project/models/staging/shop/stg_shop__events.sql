with

base as (

    select * from {{ ref('base_shop__events') }}

),

persons as (

    select * from {{ ref('identity_persons') }}

),

final as (

    select
        base.event_id,
        base.shop_event_id,
        persons.person_user_id as user_id,
        base.user_id as account_user_id,
        base.item_id,
        base.event_type,
        base.event_at,
        base.session_id,
        base.platform,
        base.query,
        base.quantity,
        base.price,
        base.request_id,
        base.batch_id,
        base.loaded_at
    from base
    inner join persons
        on base.user_id = persons.account_user_id
    where base.exclusion_reason is null and not base.is_duplicate

)

select * from final
