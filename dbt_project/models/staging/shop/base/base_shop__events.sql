with

source as (

    select * from {{ source('shop', 'events') }}

),

users as (

    select * from {{ ref('base_shop__users') }}

),

items as (

    select * from {{ ref('base_shop__items') }}

),

staged_users as (

    select shop_user_id
    from users
    where exclusion_reason is null and not is_duplicate

),

staged_items as (

    select item_id
    from items
    where exclusion_reason is null and not is_duplicate

),

-- offset 0 (skips no row): a subquery Postgres keeps as it is, not inlined into its readers, so each normalized value
-- (hashes, regexps) is computed once per row, without the temporary copy of every row a materialized CTE writes
normalized as (

    select
        {{ clean_text('event_id') }} as shop_event_id,
        {{ clean_text('user_id') }} as shop_user_id,
        {{ pseudonymize('user_id') }} as user_id,
        {{ clean_text('item_id') }} as item_id,
        -- a click on a served list carries its request_id; a shop's own click without one is a view, as always
        case
            when lower(trim(event_type)) = 'click' and nullif(trim(request_id), '') is not null then 'click'
            else {{ normalize_event_type('event_type') }}
        end as event_type,
        {{ clean_text('request_id') }} as request_id,
        event_at,
        {{ clean_text('session_id') }} as session_id,
        {{ normalize_platform('platform') }} as platform,
        nullif(lower(regexp_replace(trim(query), '\s+', ' ', 'g')), '') as query,
        quantity,
        case when price > 0 then price end as price,
        {{ pseudonymize('device_id') }} as device_hash,
        _batch_id as batch_id,
        _source_file as source_file,
        _row_number as source_row_number,
        _loaded_at as loaded_at,
        _load_seq as load_seq
    from source
    offset 0  -- noqa: AM09

),

keyed as (

    select
        *,
        coalesce(
            shop_event_id,
            'md5:' || md5(concat_ws(
                '|',
                user_id,
                item_id,
                event_type,
                extract(epoch from event_at),
                session_id,
                platform,
                query,
                quantity,
                price,
                request_id
            ))
        ) as event_id
    from normalized

),

classified as (

    select
        keyed.*,
        case
            when keyed.shop_user_id is null then 'missing_user_id'
            when keyed.event_type is null then 'missing_event_type'
            when
                keyed.event_type not in ('view', 'cart', 'remove_from_cart', 'purchase', 'search', 'click')
                then 'unknown_event_type'
            when keyed.event_at is null then 'missing_event_at'
            when keyed.event_at > {{ as_of_timestamp() }} then 'event_after_as_of'
            when keyed.event_type <> 'search' and keyed.item_id is null then 'missing_item_id'
            when keyed.event_type = 'search' and keyed.query is null then 'missing_query'
            when keyed.quantity <= 0 then 'non_positive_quantity'
            when staged_users.shop_user_id is null then 'unknown_user'
            when
                keyed.event_type <> 'search' and staged_items.item_id is null
                then 'unknown_item'
        end as exclusion_reason
    from keyed
    left join staged_users
        on keyed.shop_user_id = staged_users.shop_user_id
    left join staged_items
        on keyed.item_id = staged_items.item_id

),

versioned as (

    select
        *,
        row_number() over (
            partition by event_id, exclusion_reason is null
            order by load_seq desc nulls last, batch_id desc, loaded_at desc, source_row_number desc
        ) as version_rank
    from classified

),

final as (

    select
        event_id,
        event_id as record_key,
        shop_event_id,
        user_id,
        case when event_type <> 'search' then item_id end as item_id,
        event_type,
        event_at,
        session_id,
        platform,
        case when event_type = 'search' then query end as query,
        case
            when event_type in ('cart', 'remove_from_cart', 'purchase') then coalesce(quantity, 1)
            else quantity
        end as quantity,
        price,
        device_hash,
        request_id,
        batch_id,
        source_file,
        source_row_number,
        loaded_at,
        exclusion_reason,
        exclusion_reason is null and version_rank > 1 as is_duplicate
    from versioned

)

select * from final
