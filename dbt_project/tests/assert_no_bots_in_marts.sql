-- Users flagged in int_bot_users appear in no mart (fct_interactions is incremental: its post-hook deletes them).
with

bot_users as (

    select * from {{ ref('int_bot_users') }}

),

users as (

    select * from {{ ref('dim_users') }}

),

interactions as (

    select * from {{ ref('fct_interactions') }}

),

orders as (

    select * from {{ ref('fct_orders') }}

),

searches as (

    select * from {{ ref('fct_searches') }}

),

mart_users as (

    select
        user_id,
        'dim_users' as mart
    from users
    union all
    select distinct
        user_id,
        'fct_interactions' as mart
    from interactions
    union all
    select distinct
        user_id,
        'fct_orders' as mart
    from orders
    union all
    select distinct
        user_id,
        'fct_searches' as mart
    from searches

)

select
    mart_users.mart,
    mart_users.user_id
from mart_users
inner join bot_users
    on mart_users.user_id = bot_users.user_id
