with

base as (

    select * from {{ ref('base_shop__users') }}

),

staged as (

    select *
    from base
    where exclusion_reason is null and not is_duplicate

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

final as (

    select
        staged.user_id,
        staged.signup_at,
        staged.birth_year,
        staged.gender,
        region_spellings.region,
        staged.platform,
        staged.signup_channel,
        staged.email_hash,
        staged.phone_hash,
        staged.is_personalization_allowed,
        staged.batch_id,
        staged.loaded_at
    from staged
    left join region_spellings
        on lower(staged.region) = region_spellings.region_key and region_spellings.spelling_rank = 1

)

select * from final
