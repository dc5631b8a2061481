with

account_keys as (

    select * from {{ ref('identity_account_keys') }}

),

persons as (

    select * from {{ ref('identity_persons') }}

),

person_counts as (

    select
        -- "accounts" is the column name the summary contract uses
        count(*) as accounts,  -- noqa: RF04
        count(distinct person_user_id) as persons,
        count(*) filter (where person_accounts > 1) as merged_accounts,
        count(distinct person_user_id) filter (where person_accounts > 1) as merged_persons,
        coalesce(max(person_accounts), 0) as largest_person_accounts,
        count(distinct person_user_id) filter (where has_birth_year_conflict) as birth_year_conflicts,
        count(distinct person_user_id) filter (where has_gender_conflict) as gender_conflicts,
        count(distinct person_user_id) filter (
            where has_birth_year_conflict or has_gender_conflict
        ) as attribute_conflicts
    from persons

),

key_counts as (

    select
        count(distinct key_type || ':' || key_hash) filter (where is_over_shared) as over_shared_keys,
        count(distinct key_hash) filter (where is_over_shared and key_type = 'email') as over_shared_emails,
        count(distinct key_hash) filter (where is_over_shared and key_type = 'phone') as over_shared_phones,
        count(distinct key_hash) filter (where is_over_shared and key_type = 'device') as over_shared_devices,
        count(distinct account_user_id) filter (where is_over_shared) as accounts_on_over_shared_keys
    from account_keys

),

final as (

    select
        {{ as_of_timestamp() }} as as_of,
        person_counts.accounts,
        person_counts.persons,
        person_counts.merged_accounts,
        person_counts.merged_persons,
        case
            when person_counts.accounts > 0
                then round(person_counts.merged_accounts::numeric / person_counts.accounts, 6)
        end as merge_rate,
        person_counts.largest_person_accounts,
        key_counts.over_shared_keys,
        key_counts.over_shared_emails,
        key_counts.over_shared_phones,
        key_counts.over_shared_devices,
        key_counts.accounts_on_over_shared_keys,
        person_counts.attribute_conflicts,
        person_counts.birth_year_conflicts,
        person_counts.gender_conflicts
    from person_counts
    cross join key_counts

)

select * from final
