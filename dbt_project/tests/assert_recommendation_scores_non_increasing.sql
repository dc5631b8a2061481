{{ config(tags=['publish']) }}

-- Scores never increase with rank, in each published ranked list.
with

user_recommendations as (

    select * from {{ ref('user_recommendations') }}

),

similar_items as (

    select * from {{ ref('similar_items') }}

),

cold_start_recommendations as (

    select * from {{ ref('cold_start_recommendations') }}

),

ranked_lists as (

    select
        'user_recommendations' as list_table,
        user_id || '|' || placement as list_key,
        item_rank,
        score
    from user_recommendations
    union all
    select
        'similar_items' as list_table,
        item_id as list_key,
        item_rank,
        score
    from similar_items
    union all
    select
        'cold_start_recommendations' as list_table,
        segment_key as list_key,
        item_rank,
        score
    from cold_start_recommendations

),

compared as (

    select
        list_table,
        list_key,
        item_rank,
        score,
        lag(score) over (partition by list_table, list_key order by item_rank) as previous_score
    from ranked_lists

)

select * from compared
where score > previous_score
