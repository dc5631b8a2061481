{{
    config(
        indexes=[{'columns': ['user_id']}]
    )
}}

with

follows as (

    select * from {{ ref('user_follows') }}

),

-- not materialized: read twice, and the joins need the table's statistics (a materialized CTE has none)
users as not materialized (

    select * from {{ ref('dim_users') }}

),

order_lines as (

    select * from {{ ref('fct_order_lines') }}

),

items as (

    select * from {{ ref('dim_items') }}

),

-- only people who allow personalization lend their purchases to profiles, only such users get one
consenting_follows as (

    select follows.*
    from follows
    inner join users as followers
        on follows.user_id = followers.user_id
    inner join users as followed
        on follows.followed_user_id = followed.user_id
    where followers.is_personalization_allowed and followed.is_personalization_allowed

),

purchases_by_category as (

    select
        order_lines.user_id,
        items.category,
        count(*) as purchases
    from order_lines
    inner join items
        on order_lines.item_id = items.item_id
    where order_lines.is_completed
    group by order_lines.user_id, items.category

),

followed_purchases as (

    select
        consenting_follows.user_id,
        purchases_by_category.category,
        sum(purchases_by_category.purchases) as followed_purchases
    from consenting_follows
    inner join purchases_by_category
        on consenting_follows.followed_user_id = purchases_by_category.user_id
    group by consenting_follows.user_id, purchases_by_category.category

),

final as (

    select
        user_id,
        category,
        cast(followed_purchases as integer) as followed_purchases,
        cast(followed_purchases as double precision)
        / sum(followed_purchases) over (partition by user_id) as purchase_share,
        cast(row_number() over (partition by user_id order by followed_purchases desc, category asc) as integer)
            as category_rank
    from followed_purchases

)

select * from final
