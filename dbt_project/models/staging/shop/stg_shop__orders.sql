with

base as (

    select * from {{ ref('base_shop__orders') }}

),

persons as (

    select * from {{ ref('identity_persons') }}

),

final as (

    select
        base.order_id,
        persons.person_user_id as user_id,
        base.user_id as account_user_id,
        base.ordered_at,
        base.order_status,
        base.platform,
        base.promotion_id,
        base.batch_id,
        base.loaded_at
    from base
    inner join persons
        on base.user_id = persons.account_user_id
    where base.exclusion_reason is null and not base.is_duplicate

)

select * from final
