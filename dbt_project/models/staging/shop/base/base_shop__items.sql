with

source as (

    select * from {{ source('shop', 'items') }}

),

normalized as (

    select
        {{ clean_text('item_id') }} as item_id,
        {{ clean_text('name') }} as item_name,
        nullif(
            regexp_replace(trim(both ' >' from category_path), '\s*(>\s*)+', ' > ', 'g'),
            ''
        ) as category_path,
        {{ clean_text('brand') }} as brand,
        case when price > 0 then price end as price,
        stock_quantity,
        created_at,
        {{ clean_text('description') }} as description,
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
            when item_id is null then 'missing_item_id'
        end as exclusion_reason
    from normalized

),

versioned as (

    select
        *,
        row_number() over (
            partition by item_id, exclusion_reason is null
            order by load_seq desc nulls last, batch_id desc, loaded_at desc, source_row_number desc
        ) as version_rank
    from classified

),

final as (

    select
        item_id,
        item_id as record_key,
        item_name,
        category_path,
        coalesce(split_part(category_path, ' > ', 1), 'uncategorized') as category,
        coalesce(regexp_replace(category_path, '^.* > ', ''), 'uncategorized') as subcategory,
        brand,
        price,
        stock_quantity,
        coalesce(stock_quantity > 0, true) as is_in_stock,
        created_at,
        description,
        batch_id,
        source_file,
        source_row_number,
        loaded_at,
        exclusion_reason,
        exclusion_reason is null and version_rank > 1 as is_duplicate
    from versioned

)

select * from final
