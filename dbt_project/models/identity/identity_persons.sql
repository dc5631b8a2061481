{#-
    Connected components of the account graph: two accounts are linked when they
    share a key (e-mail, phone or device) that is not over-shared. Each account
    reaches every account of its component (a recursive CTE; `union` drops pairs
    already found, so it ends), and the person is the smallest account user_id
    reached (min-label). Over-shared keys are left out, which keeps components
    small; identity_stitching_summary reports the largest.
-#}
{{
    config(
        indexes=[{'columns': ['account_user_id'], 'unique': true}, {'columns': ['person_user_id']}]
    )
}}

with recursive

users as (

    select * from {{ ref('base_shop__users') }}

),

account_keys as (

    select * from {{ ref('identity_account_keys') }}

),

accounts as (

    select
        user_id as account_user_id,
        birth_year,
        gender
    from users
    where exclusion_reason is null and not is_duplicate

),

linking_keys as (

    select
        account_user_id,
        key_type,
        key_hash
    from account_keys
    where not is_over_shared and accounts_with_key > 1

),

links as (

    select distinct
        from_key.account_user_id as from_account_user_id,
        to_key.account_user_id as to_account_user_id
    from linking_keys as from_key
    inner join linking_keys as to_key
        on
            from_key.key_type = to_key.key_type
            and from_key.key_hash = to_key.key_hash
            and from_key.account_user_id <> to_key.account_user_id

),

reached (account_user_id, reached_account_user_id) as (

    select distinct
        from_account_user_id as account_user_id,
        from_account_user_id as reached_account_user_id
    from links

    union

    select
        reached.account_user_id,
        links.to_account_user_id
    from reached
    inner join links
        on reached.reached_account_user_id = links.from_account_user_id

),

components as (

    select
        account_user_id,
        min(reached_account_user_id) as person_user_id
    from reached
    group by account_user_id

),

assigned as (

    select
        accounts.account_user_id,
        accounts.birth_year,
        accounts.gender,
        coalesce(components.person_user_id, accounts.account_user_id) as person_user_id
    from accounts
    left join components
        on accounts.account_user_id = components.account_user_id

),

final as (

    select
        account_user_id,
        person_user_id,
        count(*) over (partition by person_user_id) as person_accounts,
        coalesce(
            min(birth_year) over (partition by person_user_id)
            <> max(birth_year) over (partition by person_user_id),
            false
        ) as has_birth_year_conflict,
        coalesce(
            min(nullif(gender, 'unknown')) over (partition by person_user_id)
            <> max(nullif(gender, 'unknown')) over (partition by person_user_id),
            false
        ) as has_gender_conflict
    from assigned

)

select * from final
