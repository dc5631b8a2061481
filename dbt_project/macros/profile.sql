{#-
    The decayed interest of a user in an item, defined once: per user and item of the events up to and
    including as_of, the sum of event weight (macro event_weight) × 0.5 ^ (days from the event to anchor /
    half_life_days), each term in numeric (an exact sum, whatever order the rows come in), with the
    item's event and purchase counts and last event. anchor is a column or expression of the
    interactions relation (alias interactions): the mart user_interest_tags decays to each user's last
    interaction, the function user_profile_features_as_of to as_of; a user's shares and price level do
    not depend on it (the factor between two anchors is common to all their rows).
-#}
{% macro decayed_user_items(interactions, as_of, anchor, half_life_days) %}
    select
        interactions.user_id,
        interactions.item_id,
        sum(cast(
            {{ event_weight('interactions.event_type') }}
            * power(
                cast(0.5 as double precision),
                extract(epoch from ({{ anchor }} - interactions.event_at)) / 86400.0 / {{ half_life_days }}
            )
            as numeric
        )) as decayed_weight,
        count(*) as events,
        count(*) filter (where interactions.event_type = 'purchase') as purchases,
        max(interactions.event_at) as last_event_at
    from {{ interactions }} as interactions
    where interactions.event_at <= {{ as_of }}
    group by interactions.user_id, interactions.item_id
{% endmacro %}

{#-
    The interest tags of users, defined once: `category:<top level>`, `subcategory:<leaf>` (when the leaf
    is not the top level) and `brand:<brand>` of the items, raw weight = the sum of the decayed weights
    (macro decayed_user_items) of the user's items with the tag, clipped at 0.
-#}
{% macro user_tag_weights(user_items, items) %}
    with item_tags as (
        select
            item_id,
            'category:' || category as tag
        from {{ items }}
        union all
        select
            item_id,
            'subcategory:' || subcategory as tag
        from {{ items }}
        where subcategory <> category
        union all
        select
            item_id,
            'brand:' || brand as tag
        from {{ items }}
        where brand is not null
    )

    select
        user_items.user_id,
        item_tags.tag,
        greatest(sum(user_items.decayed_weight), 0) as raw_weight
    from {{ user_items }} as user_items
    inner join item_tags
        on user_items.item_id = item_tags.item_id
    group by user_items.user_id, item_tags.tag
{% endmacro %}

{#-
    The point-in-time profile the learned rankers read (recsys.features.profile_source), in long format:
    per user with events strictly before as_of (of the user_ids given; every user when null), one row per interest tag (feature = the tag, value = its
    share of the user's tags of that type, summing to 1 per type) and the rows
      log_price_level  the decayed-weight mean of ln(1 + price) over the user's items with a price > 0,
      events, purchases, days_since_last_event.
    One pass over analytics.fct_interactions (its event_at index bounds the scan); work_mem as the models'
    (var model_work_mem), so the aggregations stay in memory.
-#}
{% macro user_profile_features_function() %}
do $body$
begin
    perform pg_advisory_xact_lock(hashtext('recsys.user_profile_features'));
    create schema if not exists analytics;
    set local check_function_bodies = off;
    drop function if exists analytics.user_profile_features_as_of(timestamptz, double precision);
    create or replace function analytics.user_profile_features_as_of(
        as_of timestamptz, half_life_days double precision, user_ids text[] default null
    ) returns table (user_id text, feature text, value double precision)
    language sql stable
    set work_mem = '{{ var("model_work_mem", "128MB") | replace("'", "") }}'
    -- the users' events by the index on user_id: at the default cost of a random page (4) Postgres scanned all
    -- 45M events of the L shop for a batch of 5,000 users (13 s; by the index 2 s)
    set random_page_cost = 1.1
    as $fn$
        with
        interactions as (
            select user_id, item_id, event_type, event_at
            from analytics.fct_interactions
            where user_ids is null and event_at < as_of
            union all
            select events.user_id, events.item_id, events.event_type, events.event_at
            from (select distinct unnest(user_ids) as user_id) as wanted
            inner join analytics.fct_interactions as events
                on wanted.user_id = events.user_id
            where events.event_at < as_of
        ),

        user_items as materialized (
            {{ decayed_user_items('interactions', 'as_of', 'as_of', 'half_life_days') }}
        ),

        tags as (
            {{ user_tag_weights('user_items', 'analytics.dim_items') }}
        ),

        users as (
            select
                user_items.user_id,
                sum(user_items.events) as events,
                sum(user_items.purchases) as purchases,
                extract(epoch from (as_of - max(user_items.last_event_at))) / 86400.0 as days_since_last_event,
                sum(user_items.decayed_weight * ln(1 + items.price)) filter (where items.price > 0)
                / nullif(sum(user_items.decayed_weight) filter (where items.price > 0), 0) as log_price_level
            from user_items
            left join analytics.dim_items as items
                on user_items.item_id = items.item_id
            group by user_items.user_id
        ),

        tag_types as (
            select
                tags.user_id,
                split_part(tags.tag, ':', 1) as tag_type,
                sum(tags.raw_weight) as total_weight
            from tags
            group by tags.user_id, split_part(tags.tag, ':', 1)
        )

        select
            tags.user_id,
            tags.tag,
            cast(tags.raw_weight / tag_types.total_weight as double precision)
        from tags
        inner join tag_types
            on tags.user_id = tag_types.user_id and split_part(tags.tag, ':', 1) = tag_types.tag_type
        where tags.raw_weight > 0
        union all
        select users.user_id, activity.feature, activity.value
        from users
        cross join lateral (
            values
            ('log_price_level', cast(users.log_price_level as double precision)),
            ('events', cast(users.events as double precision)),
            ('purchases', cast(users.purchases as double precision)),
            ('days_since_last_event', cast(users.days_since_last_event as double precision))
        ) as activity (feature, value)
        where activity.value is not null
    $fn$;
end
$body$
{% endmacro %}

{#- `dbt run-operation install_profile_features`: the profile function without building a model. -#}
{% macro install_profile_features() %}
    {% do run_query(user_profile_features_function()) %}
{% endmacro %}
