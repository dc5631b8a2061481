{{
    config(
        materialized='table',
        indexes=[{'columns': ['user_id'], 'unique': true}]
    )
}}

with

users as (

    select * from {{ ref('dim_users') }}

),

orders as (

    select * from {{ ref('fct_orders') }}

),

buyers as (

    select
        user_id,
        count(*) as frequency,
        sum(net_amount) as monetary,
        min(ordered_at) as first_order_at,
        max(ordered_at) as last_order_at,
        floor(
            extract(epoch from ({{ as_of_timestamp() }} - max(ordered_at))) / 86400
        ) as recency_days
    from orders
    where is_completed
    group by user_id

),

scored as (

    -- quintile score = 1 + floor(5 * percent_rank), in exact integer arithmetic;
    -- ties share the lower score, a single buyer scores 1
    select
        *,
        least(
            5,
            1 + 5 * (rank() over (order by recency_days desc) - 1) / greatest(count(*) over () - 1, 1)
        ) as r_score,
        least(
            5,
            1 + 5 * (rank() over (order by frequency asc) - 1) / greatest(count(*) over () - 1, 1)
        ) as f_score,
        least(
            5,
            1 + 5 * (rank() over (order by monetary asc) - 1) / greatest(count(*) over () - 1, 1)
        ) as m_score
    from buyers

),

segmented as (

    select
        *,
        case
            when r_score >= 4 and frequency = 1 then 'new_customer'
            when r_score >= 4 and round((f_score + m_score) / 2.0) >= 4 then 'champions'
            when r_score >= 3 and round((f_score + m_score) / 2.0) >= 3 then 'loyal'
            when r_score >= 3 then 'potential_loyalist'
            when round((f_score + m_score) / 2.0) >= 3 then 'at_risk'
            when r_score = 2 then 'hibernating'
            else 'lost'
        end as rfm_segment
    from scored

),

final as (

    select
        users.user_id,
        cast(segmented.recency_days as integer) as recency_days,
        cast(coalesce(segmented.frequency, 0) as integer) as frequency,
        cast(coalesce(segmented.monetary, 0) as numeric) as monetary,
        cast(segmented.r_score as integer) as r_score,
        cast(segmented.f_score as integer) as f_score,
        cast(segmented.m_score as integer) as m_score,
        coalesce(segmented.rfm_segment, 'prospect') as rfm_segment,
        segmented.first_order_at,
        segmented.last_order_at
    from users
    left join segmented
        on users.user_id = segmented.user_id

)

select * from final
