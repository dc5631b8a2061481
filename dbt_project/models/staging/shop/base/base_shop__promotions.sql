with

source as (

    select * from {{ source('shop', 'promotions') }}

),

normalized as (

    select
        {{ clean_text('promotion_id') }} as promotion_id,
        {{ clean_text('name') }} as promotion_name,
        coalesce(
            nullif(regexp_replace(lower(trim(promotion_type)), '[^a-z0-9]+', '_', 'g'), ''),
            'unknown'
        ) as promotion_type,
        case when discount_value >= 0 then discount_value end as discount_value,
        {{ clean_text('category') }} as category,
        starts_at,
        ends_at,
        _batch_id as batch_id,
        _source_file as source_file,
        _row_number as source_row_number,
        _loaded_at as loaded_at,
        _load_seq as load_seq
    from source

),

classified as (

    select
        *,
        case
            when promotion_id is null then 'missing_promotion_id'
            when starts_at is null then 'missing_starts_at'
            when ends_at is null then 'missing_ends_at'
            when ends_at < starts_at then 'ends_before_starts'
        end as exclusion_reason
    from normalized

),

versioned as (

    select
        *,
        row_number() over (
            partition by promotion_id, exclusion_reason is null
            order by load_seq desc nulls last, batch_id desc, loaded_at desc, source_row_number desc
        ) as version_rank
    from classified

),

final as (

    select
        promotion_id,
        promotion_id as record_key,
        promotion_name,
        promotion_type,
        discount_value,
        category,
        starts_at,
        ends_at,
        batch_id,
        source_file,
        source_row_number,
        loaded_at,
        exclusion_reason,
        exclusion_reason is null and version_rank > 1 as is_duplicate
    from versioned

)

select * from final
