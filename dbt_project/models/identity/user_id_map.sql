{#- The only place where the pseudonymous user_id meets the shop's own id: for serving and export only. -#}
{{
    config(
        indexes=[{'columns': ['user_id'], 'unique': true}, {'columns': ['shop_user_id'], 'unique': true}]
    )
}}

with

users as (

    select * from {{ ref('base_shop__users') }}

),

final as (

    select
        user_id,
        shop_user_id
    from users
    where exclusion_reason is null and not is_duplicate

)

select * from final
