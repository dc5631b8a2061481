with

source as (

    select * from {{ source('shop', 'users') }}

),

-- offset 0 (skips no row): a subquery Postgres keeps as it is, not inlined into its readers, so each normalized value
-- (hashes, regexps) is computed once per row, without the temporary copy of every row a materialized CTE writes
normalized as (

    select
        {{ clean_text('user_id') }} as shop_user_id,
        {{ pseudonymize('user_id') }} as user_id,
        signup_at,
        case
            when
                birth_year between {{ var('min_birth_year') }}
                and extract(year from {{ as_of_timestamp() }})
                then cast(birth_year as integer)
        end as birth_year,
        {{ normalize_gender('gender') }} as gender,
        {{ clean_text('region') }} as region,
        {{ normalize_platform('platform') }} as platform,
        coalesce(lower({{ clean_text('signup_channel') }}), 'unknown') as signup_channel,
        {{ pseudonymize('lower(email)') }} as email_hash,
        {{ pseudonymize("regexp_replace(phone, '[^0-9]', '', 'g')") }} as phone_hash,
        coalesce(is_personalization_allowed, true) as is_personalization_allowed,
        _batch_id as batch_id,
        _source_file as source_file,
        _row_number as source_row_number,
        _loaded_at as loaded_at,
        _load_seq as load_seq
    from source
    offset 0  -- noqa: AM09

),

classified as (

    select
        *,
        case
            when user_id is null then 'missing_user_id'
            when signup_at is null then 'missing_signup_at'
            when signup_at > {{ as_of_timestamp() }} then 'signup_after_as_of'
        end as exclusion_reason
    from normalized

),

versioned as (

    select
        *,
        row_number() over (
            partition by user_id, exclusion_reason is null
            order by load_seq desc nulls last, batch_id desc, loaded_at desc, source_row_number desc
        ) as version_rank
    from classified

),

final as (

    select
        shop_user_id,
        user_id,
        user_id as record_key,
        signup_at,
        birth_year,
        gender,
        region,
        platform,
        signup_channel,
        email_hash,
        phone_hash,
        is_personalization_allowed,
        batch_id,
        source_file,
        source_row_number,
        loaded_at,
        exclusion_reason,
        exclusion_reason is null and version_rank > 1 as is_duplicate
    from versioned

)

select * from final
