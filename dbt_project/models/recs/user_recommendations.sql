{#- The lists the run generated. An incremental run's other lists, carried from earlier runs, are added by the
    publish (recsys.serving.publish.swap_recs), which keeps those already published instead of copying them.
    The primary key (user_id, placement, item_rank) serves the lookups by user and placement. -#}
{{
    config(
        indexes=[{'columns': ['item_id']}]
    )
}}

with

recommendations as (

    select * from {{ ref('stg_ml__recommendations') }}

),

-- a run re-published later lists only the users still in the warehouse (not since merged, flagged or erased)
users as (

    select user_id from {{ ref('dim_users') }}

),

final as (

    select
        user_id,
        placement,
        item_rank,
        item_id,
        score,
        model_name,
        reason_code,
        reason_text,
        run_id,
        generated_at
    from recommendations
    where
        run_id = {{ publish_run_id() }}
        and user_id in (select users.user_id from users)

)

-- in primary key order: the key's index grows at its right edge (not at random pages), and a user's lists are
-- stored together
select * from final
order by user_id, placement, item_rank
