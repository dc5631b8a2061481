{#-
    The only place where the pseudonymous user_id meets the shop's own id: for serving and export only.
    One row per shop account; the accounts of one person (identity_persons) share its user_id.
-#}
{{
    config(
        indexes=[
            {'columns': ['shop_user_id'], 'unique': true},
            {'columns': ['account_user_id'], 'unique': true},
            {'columns': ['user_id']}
        ]
    )
}}

with

users as (

    select * from {{ ref('base_shop__users') }}

),

persons as (

    select * from {{ ref('identity_persons') }}

),

final as (

    select
        persons.person_user_id as user_id,
        users.shop_user_id,
        users.user_id as account_user_id
    from users
    inner join persons
        on users.user_id = persons.account_user_id
    where users.exclusion_reason is null and not users.is_duplicate

)

select * from final
