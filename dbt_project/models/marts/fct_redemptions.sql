{{
    config(
        indexes=[{'columns': ['promotion_id']}, {'columns': ['user_id']}]
    )
}}

with

redemptions as (

    select * from {{ ref('stg_shop__redemptions') }}

),

users as (

    select * from {{ ref('dim_users') }}

),

promotions as (

    select * from {{ ref('dim_promotions') }}

),

known_redemptions as (

    select redemptions.*
    from redemptions
    inner join users
        on redemptions.user_id = users.user_id
    inner join promotions
        on redemptions.promotion_id = promotions.promotion_id
    where redemptions.redeemed_at <= {{ as_of_timestamp() }}

),

final as (

    select
        redemption_id,
        promotion_id,
        user_id,
        order_id,
        redeemed_at,
        cast(redeemed_at at time zone 'UTC' as date) as redeemed_date
    from known_redemptions

)

select * from final
