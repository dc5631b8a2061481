with

base as (

    select * from {{ ref('base_shop__social_edges') }}

),

-- not materialized: read twice, and the joins need the table's statistics (a materialized CTE has none)
persons as not materialized (

    select * from {{ ref('identity_persons') }}

),

final as (

    select
        base.edge_id,
        from_persons.person_user_id as from_user_id,
        to_persons.person_user_id as to_user_id,
        base.from_user_id as from_account_user_id,
        base.to_user_id as to_account_user_id,
        base.kind,
        base.item_id,
        base.created_at,
        base.batch_id,
        base.loaded_at
    from base
    inner join persons as from_persons
        on base.from_user_id = from_persons.account_user_id
    inner join persons as to_persons
        on base.to_user_id = to_persons.account_user_id
    where base.exclusion_reason is null and not base.is_duplicate

)

select * from final
