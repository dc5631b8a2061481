with

base as (

    select * from {{ ref('base_shop__redemptions') }}

),

persons as (

    select * from {{ ref('identity_persons') }}

),

final as (

    select
        base.redemption_id,
        base.promotion_id,
        persons.person_user_id as user_id,
        base.order_id,
        base.redeemed_at,
        base.batch_id,
        base.loaded_at
    from base
    inner join persons
        on base.user_id = persons.account_user_id
    where base.exclusion_reason is null and not base.is_duplicate

)

select * from final
