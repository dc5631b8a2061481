{{
    config(
        indexes=[{'columns': ['key_type', 'key_hash']}, {'columns': ['account_user_id']}]
    )
}}

with

users as (

    select * from {{ ref('base_shop__users') }}

),

events as (

    select * from {{ ref('base_shop__events') }}

),

accounts as (

    select
        user_id,
        email_hash,
        phone_hash
    from users
    where exclusion_reason is null and not is_duplicate

),

account_keys as (

    select
        user_id as account_user_id,
        'email' as key_type,
        email_hash as key_hash
    from accounts
    where email_hash is not null

    union all

    select
        user_id as account_user_id,
        'phone' as key_type,
        phone_hash as key_hash
    from accounts
    where phone_hash is not null

),

-- only valid events (known account, not after as_of) link accounts
device_keys as (

    select distinct
        user_id as account_user_id,
        'device' as key_type,
        device_hash as key_hash
    from events
    where exclusion_reason is null and device_hash is not null

),

keys as (

    select * from account_keys
    union all
    select * from device_keys

),

counted as (

    select
        account_user_id,
        key_type,
        key_hash,
        count(*) over (partition by key_type, key_hash) as accounts_with_key
    from keys

),

final as (

    select
        account_user_id,
        key_type,
        key_hash,
        accounts_with_key,
        accounts_with_key > {{ var('identity_max_accounts_per_key') }} as is_over_shared
    from counted

)

select * from final
