{#-
    Attribution: a click is the served list's own click event (same request_id and item), a conversion a
    purchase of the shown item by the same person, each within var attribution_window_hours after the list
    was shown. A purchase goes to one impression only, the latest one before it (last touch), so purchases
    are not counted twice when a shopper saw the item in several lists. Impressions after as_of are left out, so a re-run for an earlier
    interval gives the same table.
-#}
with

impressions as (

    select * from {{ ref('stg_shop__impressions') }}
    where shown_at <= {{ as_of_timestamp() }}

),

events as (

    select * from {{ ref('stg_shop__events') }}
    where event_type in ('click', 'purchase') and event_at <= {{ as_of_timestamp() }}

),

window_ends as (

    select
        *,
        shown_at + interval '1 hour' * {{ var('attribution_window_hours') }} as attribution_ends_at
    from impressions

),

clicks as (

    select
        window_ends.request_id,
        window_ends.position,
        min(events.event_at) as clicked_at
    from window_ends
    inner join events
        on
            window_ends.request_id = events.request_id
            and window_ends.item_id = events.item_id
            and events.event_type = 'click'
            and window_ends.shown_at <= events.event_at
            and window_ends.attribution_ends_at > events.event_at
    group by window_ends.request_id, window_ends.position

),

-- last touch: a purchase goes to the latest impression of the item to the person before it, in the window
purchase_touches as (

    select
        window_ends.request_id,
        window_ends.position,
        events.event_at,
        row_number() over (
            partition by events.event_id
            order by window_ends.shown_at desc, window_ends.request_id desc, window_ends.position asc
        ) as touch_rank
    from window_ends
    inner join events
        on
            window_ends.user_id = events.user_id
            and window_ends.item_id = events.item_id
            and events.event_type = 'purchase'
            and window_ends.shown_at <= events.event_at
            and window_ends.attribution_ends_at > events.event_at

),

purchases as (

    select
        request_id,
        position,
        min(event_at) as purchased_at
    from purchase_touches
    where touch_rank = 1
    group by request_id, position

),

final as (

    select
        window_ends.request_id,
        window_ends.position,
        window_ends.user_id,
        window_ends.item_id,
        window_ends.model_name,
        window_ends.arm,
        window_ends.experiment,
        window_ends.challenger_share,
        window_ends.placement,
        window_ends.run_id,
        window_ends.shown_at,
        cast(window_ends.shown_at at time zone 'UTC' as date) as shown_date,
        clicks.clicked_at is not null as is_clicked,
        clicks.clicked_at,
        purchases.purchased_at is not null as is_purchased,
        purchases.purchased_at
    from window_ends
    left join clicks
        on window_ends.request_id = clicks.request_id and window_ends.position = clicks.position
    left join purchases
        on window_ends.request_id = purchases.request_id and window_ends.position = purchases.position

)

select * from final
