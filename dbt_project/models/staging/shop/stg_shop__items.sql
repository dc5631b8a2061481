with

base as (

    select * from {{ ref('base_shop__items') }}

),

staged as (

    select *
    from base
    where exclusion_reason is null and not is_duplicate

),

-- the same brand spelt differently ('Voltix', 'voltix') gets its most common spelling
brand_spellings as (

    select
        lower(brand) as brand_key,
        brand,
        row_number() over (
            partition by lower(brand)
            order by count(*) desc, brand = lower(brand) asc, brand asc
        ) as spelling_rank
    from staged
    where brand is not null
    group by lower(brand), brand

),

final as (

    select
        staged.item_id,
        staged.item_name,
        staged.category_path,
        staged.category,
        staged.subcategory,
        brand_spellings.brand,
        staged.price,
        staged.stock_quantity,
        staged.is_in_stock,
        staged.created_at,
        staged.description,
        staged.batch_id,
        staged.loaded_at
    from staged
    left join brand_spellings
        on lower(staged.brand) = brand_spellings.brand_key and brand_spellings.spelling_rank = 1

)

select * from final
