{{ config(tags=['publish']) }}

-- Propensity never increases with target_rank within a promotion, and every target allows personalization.
with

promotion_targets as (

    select * from {{ ref('promotion_targets') }}

),

users as (

    select * from {{ ref('dim_users') }}

),

compared as (

    select
        promotion_id,
        user_id,
        target_rank,
        propensity,
        lag(propensity) over (partition by promotion_id order by target_rank) as previous_propensity
    from promotion_targets

),

violations as (

    select
        compared.promotion_id,
        compared.user_id,
        compared.target_rank,
        case
            when compared.propensity > compared.previous_propensity then 'propensity_increases_with_rank'
            when not users.is_personalization_allowed then 'personalization_not_allowed'
        end as violation
    from compared
    left join users
        on compared.user_id = users.user_id

)

select * from violations
where violation is not null
