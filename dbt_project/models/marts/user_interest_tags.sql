{{
    config(
        indexes=[{'columns': ['user_id', 'tag_rank'], 'unique': true}, {'columns': ['tag']}]
    )
}}

with

interactions as (

    select * from {{ ref('fct_interactions') }}

),

items as (

    select * from {{ ref('dim_items') }}

),

users as (

    select * from {{ ref('dim_users') }}

),

personalized_users as (

    select user_id
    from users
    where is_personalization_allowed

),

decayed_user_items as (

    select
        interactions.user_id,
        interactions.item_id,
        -- each term in numeric: an exact sum, the same whatever order the rows come in (incremental or full build)
        sum(cast(
            {{ event_weight('interactions.event_type') }}
            * power(
                cast(0.5 as double precision),
                extract(epoch from ({{ as_of_timestamp() }} - interactions.event_at))
                / 86400.0 / {{ var('interest_half_life_days') }}
            )
            as numeric
        )) as decayed_weight
    from interactions
    inner join personalized_users
        on interactions.user_id = personalized_users.user_id
    where interactions.event_at <= {{ as_of_timestamp() }}
    group by interactions.user_id, interactions.item_id

),

item_tags as (

    select
        item_id,
        'category:' || category as tag
    from items
    union all
    select
        item_id,
        'subcategory:' || subcategory as tag
    from items
    where subcategory <> category
    union all
    select
        item_id,
        'brand:' || brand as tag
    from items
    where brand is not null

),

user_tags as (

    select
        decayed_user_items.user_id,
        item_tags.tag,
        greatest(sum(decayed_user_items.decayed_weight), 0) as raw_weight
    from decayed_user_items
    inner join item_tags
        on decayed_user_items.item_id = item_tags.item_id
    group by decayed_user_items.user_id, item_tags.tag

),

normalized as (

    select
        user_id,
        tag,
        raw_weight,
        raw_weight / max(raw_weight) over (partition by user_id) as weight
    from user_tags
    where raw_weight > 0

),

final as (

    select
        user_id,
        tag,
        split_part(tag, ':', 1) as tag_type,
        cast(weight as double precision) as weight,
        cast(
            row_number() over (
                partition by user_id
                order by
                    weight desc,
                    case split_part(tag, ':', 1) when 'category' then 1 when 'subcategory' then 2 else 3 end asc,
                    tag asc
            ) as integer
        ) as tag_rank,
        cast(raw_weight as double precision) as raw_weight
    from normalized

)

select * from final
