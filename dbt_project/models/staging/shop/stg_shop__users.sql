{#-
    A table, unlike the other stg_shop__* views: merging accounts into persons (a group by over every user) is the
    work of a model, and about fifteen readers (dim_users, the reconciliation, its tests and the relationship tests
    of other models) would each do it again on a view.
-#}
{{ config(materialized='table', indexes=[{'columns': ['user_id'], 'unique': true}]) }}

with

base as (

    select * from {{ ref('base_shop__users') }}

),

persons as (

    select * from {{ ref('identity_persons') }}

),

staged as (

    select
        base.*,
        persons.person_user_id
    from base
    inner join persons
        on base.user_id = persons.account_user_id
    where base.exclusion_reason is null and not base.is_duplicate

),

-- the same region spelt differently ('Shandong', 'SHANDONG') gets its most common spelling
region_spellings as (

    select
        lower(region) as region_key,
        region,
        row_number() over (
            partition by lower(region)
            order by count(*) desc, region = upper(region) asc, region asc
        ) as spelling_rank
    from staged
    where region is not null
    group by lower(region), region

),

with_regions as (

    select
        staged.*,
        region_spellings.region as unified_region
    from staged
    left join region_spellings
        on lower(staged.region) = region_spellings.region_key and region_spellings.spelling_rank = 1

),

-- one row per person: the first account signed up (then the smallest key) gives the profile fields;
-- attributes the accounts disagree on become unknown; one opted-out account opts the person out
persons_merged as (

    select
        person_user_id as user_id,
        min(signup_at) as signup_at,
        case when min(birth_year) = max(birth_year) then min(birth_year) end as birth_year,
        case
            when min(nullif(gender, 'unknown')) = max(nullif(gender, 'unknown'))
                then min(nullif(gender, 'unknown'))
            else 'unknown'
        end as gender,
        (array_agg(unified_region order by signup_at, user_id) filter (where unified_region is not null))[1] as region,
        (array_agg(platform order by signup_at, user_id))[1] as platform,
        (array_agg(signup_channel order by signup_at, user_id))[1] as signup_channel,
        (array_agg(email_hash order by signup_at, user_id) filter (where email_hash is not null))[1] as email_hash,
        (array_agg(phone_hash order by signup_at, user_id) filter (where phone_hash is not null))[1] as phone_hash,
        bool_and(is_personalization_allowed) as is_personalization_allowed,
        count(*) as account_count,
        max(batch_id) as batch_id,
        max(loaded_at) as loaded_at
    from with_regions
    group by person_user_id

),

final as (

    select
        user_id,
        signup_at,
        birth_year,
        gender,
        region,
        platform,
        signup_channel,
        email_hash,
        phone_hash,
        is_personalization_allowed,
        account_count,
        batch_id,
        loaded_at
    from persons_merged

)

select * from final
