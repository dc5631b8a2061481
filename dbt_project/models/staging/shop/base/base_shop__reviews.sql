with

source as (

    select * from {{ source('shop', 'reviews') }}

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
        {{ clean_text('review_id') }} as shop_review_id,
        {{ clean_text('user_id') }} as shop_user_id,
        {{ pseudonymize('user_id') }} as user_id,
        {{ clean_text('item_id') }} as item_id,
        rating,
        reviewed_at,
        {{ clean_text('review_text') }} as review_text,
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
            shop_review_id,
            'md5:' || md5(concat_ws('|', user_id, item_id, extract(epoch from reviewed_at)))
        ) as review_id
    from normalized

),

classified as (

    select
        keyed.*,
        case
            when keyed.shop_user_id is null then 'missing_user_id'
            when keyed.item_id is null then 'missing_item_id'
            when keyed.rating is null then 'missing_rating'
            when keyed.rating not between 1 and 5 then 'rating_out_of_range'
            when keyed.reviewed_at is null then 'missing_reviewed_at'
            when keyed.reviewed_at > {{ as_of_timestamp() }} then 'reviewed_after_as_of'
            when staged_users.shop_user_id is null then 'unknown_user'
            when staged_items.item_id is null then 'unknown_item'
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
            partition by review_id, exclusion_reason is null
            order by load_seq desc nulls last, batch_id desc, loaded_at desc, source_row_number desc
        ) as version_rank
    from classified

),

final as (

    select
        review_id,
        review_id as record_key,
        user_id,
        item_id,
        cast(rating as integer) as rating,
        reviewed_at,
        review_text,
        batch_id,
        source_file,
        source_row_number,
        loaded_at,
        exclusion_reason,
        exclusion_reason is null and version_rank > 1 as is_duplicate
    from versioned

)

select * from final
