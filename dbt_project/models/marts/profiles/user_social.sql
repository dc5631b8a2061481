{{
    config(
        indexes=[{'columns': ['user_id'], 'unique': true}]
    )
}}

with

users as (

    select * from {{ ref('dim_users') }}

),

follows as (

    select * from {{ ref('user_follows') }}

),

followed_categories as (

    select * from {{ ref('user_followed_categories') }}

),

following as (

    select
        user_id,
        count(*) filter (where is_following) as following_count,
        bool_or(is_referrer) as has_referrer
    from follows
    group by user_id

),

followers as (

    select
        followed_user_id as user_id,
        count(*) filter (where is_following) as follower_count
    from follows
    group by followed_user_id

),

followed_top_categories as (

    select
        user_id,
        string_agg(category, '|' order by category_rank) as followed_top_categories
    from followed_categories
    where category_rank <= {{ var('top_categories_count') }}
    group by user_id

),

final as (

    select
        users.user_id,
        cast(coalesce(followers.follower_count, 0) as integer) as follower_count,
        cast(coalesce(following.following_count, 0) as integer) as following_count,
        coalesce(following.has_referrer, false) as has_referrer,
        followed_top_categories.followed_top_categories
    from users
    left join following
        on users.user_id = following.user_id
    left join followers
        on users.user_id = followers.user_id
    left join followed_top_categories
        on users.user_id = followed_top_categories.user_id

)

select * from final
