with

base as (

    select * from {{ ref('base_shop__reviews') }}

),

final as (

    select
        review_id,
        user_id,
        item_id,
        rating,
        reviewed_at,
        review_text,
        batch_id,
        loaded_at
    from base
    where exclusion_reason is null and not is_duplicate

)

select * from final
