with

source as (

    select * from {{ source('shop', 'impressions') }}

),

persons as (

    select * from {{ ref('identity_persons') }}

),

normalized as (

    select
        {{ clean_text('request_id') }} as request_id,
        {{ pseudonymize('user_id') }} as account_user_id,
        {{ clean_text('item_id') }} as item_id,
        cast(position as integer) as item_position,
        shown_at,
        {{ clean_text('run_id') }} as run_id,
        {{ clean_text('model_name') }} as model_name,
        lower({{ clean_text('arm') }}) as arm,
        {{ clean_text('experiment') }} as experiment,
        cast(challenger_share as double precision) as challenger_share,
        coalesce(lower({{ clean_text('placement') }}), 'unknown') as placement,
        _batch_id as batch_id,
        _row_number as source_row_number,
        _loaded_at as loaded_at,
        _load_seq as load_seq
    from source

),

-- a batch drained again replaces its rows in raw; one version per impression stays, the latest to arrive
versioned as (

    select
        *,
        row_number() over (
            partition by request_id, item_position
            order by load_seq desc nulls last, batch_id desc, source_row_number desc
        ) as version_rank
    from normalized
    where request_id is not null and item_id is not null and item_position > 0

),

final as (

    select
        versioned.request_id,
        versioned.item_position as position,  -- noqa: RF04
        persons.person_user_id as user_id,
        versioned.account_user_id,
        versioned.item_id,
        versioned.shown_at,
        versioned.run_id,
        versioned.model_name,
        versioned.arm,
        versioned.experiment,
        versioned.challenger_share,
        versioned.placement,
        versioned.batch_id,
        versioned.loaded_at
    from versioned
    inner join persons
        on versioned.account_user_id = persons.account_user_id
    where versioned.version_rank = 1

)

select * from final
