"""Search candidates and their ranker features, in SQL over the warehouse.

Matching runs against ``analytics.item_search_tokens`` (the dbt search index: tokens of item name,
category path and brand). A query token matches an item token exactly (weight 1) or within one edit
(weight :data:`FUZZY_WEIGHT`: the two tokens share a one-character deletion, which catches one
substituted, inserted, dropped or swapped letter; tokens of 5+ characters only). This is plain SQL:
``pg_trgm`` is not in the embedded pgserver build, so it is not relied on. An item's text score is the
mean over the query's tokens of its best match. The base order is text score, then popularity
(event-weighted interactions of the last :data:`POPULARITY_DAYS`).

:func:`candidate_features` returns the top of the base order of every search with :data:`FEATURES`,
all computed from data strictly before an ``as_of`` time; :mod:`recsys.usecases.search` ranks them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from psycopg2 import sql

from recsys.db import frames
from recsys.db.warehouse import dbt_vars
from recsys.features.interactions import event_weight_sql

#: ranker features, in the order of the stored coefficients
FEATURES: tuple[str, ...] = (
    "text_score",
    "popularity",
    "category_affinity",
    "brand_affinity",
    "price_fit",
    "search_interest",
    "cf_score",
)
#: match weight of a query token within one edit of an item token (an exact match weighs 1)
FUZZY_WEIGHT = 0.6
#: tokens shorter than this only match exactly
FUZZY_MIN_LENGTH = 5
POPULARITY_DAYS = 30
#: shrinkage of the user's affinities and price band towards "no preference", in event weights (3 views)
PRIOR_WEIGHT = 3.0
#: half-life of the user's event and search weights (dbt var interest_half_life_days)
HALF_LIFE_DAYS = float(dbt_vars()["interest_half_life_days"])
#: neighbours per item of the CF similarity table built for evaluation (as ``recs.similar_items``)
N_SIMILAR = 20

SEARCH_DDL = """
create table if not exists ml.search_ranker (
    run_id text not null,
    feature text not null,
    center double precision not null,
    scale double precision not null,
    coefficient double precision not null,
    primary key (run_id, feature)
);
"""

#: the distinct search tokens of ``{column}``: the SQL function the dbt project defines once
#: (``search_tokens_function`` in ``dbt_project/macros/search.sql``, created by its on-run-start hook)
_TOKENS = "lateral (select analytics.search_tokens({column}) as token)"


REQUESTS_DDL = """
drop table if exists pg_temp.search_requests;
create temp table search_requests (search_id text primary key, user_id text, query text not null);
"""

#: the search-interest profile from the searches before ``as_of`` (point in time): the dbt macro
#: ``search_interests`` (the mart ``user_search_interests``) as the SQL function its on-run-start hook creates;
#: the function counts searches up to and including its as_of, and a search at the cutoff is a test search
INTERESTS_AS_OF = (
    "select user_id, term, weight from analytics.user_search_interests_as_of("
    "%(as_of)s::timestamptz - interval '1 microsecond', %(half_life)s)"
)

INTERESTS_PUBLISHED = "select user_id, term, weight from analytics.user_search_interests"

_FEATURES_SQL = f"""
with
requests as (select search_id, user_id, query from pg_temp.search_requests),
-- text match and the base order depend on the query alone: computed once per distinct query, not per search
queries as (select distinct query from requests),
query_tokens as (
    select distinct queries.query, tokens.token
    from queries cross join {_TOKENS.format(column="queries.query")} as tokens
),
query_sizes as (select query, count(*) as n_tokens from query_tokens group by query),
fuzzy_query_tokens as (
    select distinct token from query_tokens where length(token) >= %(fuzzy_min)s
),
variants as (
    -- a token and its one-character deletions (the deletion neighbourhood of edit distance 1)
    select tokens.token, tokens.token as variant from fuzzy_query_tokens as tokens
    union
    select tokens.token, overlay(tokens.token placing '' from position for 1)
    from fuzzy_query_tokens as tokens cross join generate_series(1, length(tokens.token)) as position
),
vocabulary as (
    select distinct item_tokens.token
    from analytics.item_search_tokens as item_tokens
    where length(item_tokens.token) between
        (select min(length(token)) - 1 from fuzzy_query_tokens)
        and (select max(length(token)) + 1 from fuzzy_query_tokens)
),
vocabulary_variants as (
    select vocabulary.token, vocabulary.token as variant from vocabulary
    union
    select vocabulary.token, overlay(vocabulary.token placing '' from position for 1)
    from vocabulary cross join generate_series(1, length(vocabulary.token)) as position
),
token_matches as (
    select distinct token as query_token, token as item_token, 1.0 as match_weight from query_tokens
    union all
    select distinct variants.token, vocabulary_variants.token, %(fuzzy_weight)s
    from variants
    inner join vocabulary_variants on vocabulary_variants.variant = variants.variant
    where vocabulary_variants.token <> variants.token
),
token_item_matches as (
    select query_tokens.query, item_tokens.item_id, query_tokens.token,
        max(token_matches.match_weight) as match_weight
    from query_tokens
    inner join token_matches on token_matches.query_token = query_tokens.token
    inner join analytics.item_search_tokens as item_tokens on item_tokens.token = token_matches.item_token
    group by query_tokens.query, item_tokens.item_id, query_tokens.token
),
text_scores as (
    select matches.query, matches.item_id, sum(matches.match_weight) / min(query_sizes.n_tokens) as text_score
    from token_item_matches as matches
    inner join query_sizes on query_sizes.query = matches.query
    group by matches.query, matches.item_id
),
popularity as (
    select interactions.item_id, ln(1 + sum({event_weight_sql("interactions.event_type")})) as popularity
    from analytics.fct_interactions as interactions
    where interactions.event_at >= %(as_of)s - make_interval(days => %(popularity_days)s)
        and interactions.event_at < %(as_of)s
        and interactions.item_id in (select item_id from text_scores)
    group by interactions.item_id
),
price_bands as (
    -- where an item's price lies among the items of its category path listed by then: 0 cheapest .. 1 dearest
    select items.item_id,
        percent_rank() over (partition by coalesce(items.category_path, items.category) order by items.price)
            as price_position
    from analytics.dim_items as items
    where items.price is not null and (items.created_at is null or items.created_at < %(as_of)s)
),
ranked as (
    select text_scores.query, text_scores.item_id, text_scores.text_score,
        coalesce(popularity.popularity, 0) as popularity,
        items.category, items.brand,
        price_bands.price_position,
        row_number() over (
            partition by text_scores.query
            order by text_scores.text_score desc, coalesce(popularity.popularity, 0) desc, text_scores.item_id
        ) as base_rank
    from text_scores
    inner join analytics.dim_items as items on items.item_id = text_scores.item_id
    left join popularity on popularity.item_id = text_scores.item_id
    left join price_bands on price_bands.item_id = text_scores.item_id
    where (items.created_at is null or items.created_at < %(as_of)s)
        and (items.is_in_stock or not %(in_stock_only)s)
),
candidates as (
    select requests.search_id, requests.user_id, ranked.item_id, ranked.text_score, ranked.popularity,
        ranked.category, ranked.brand, ranked.price_position, ranked.base_rank
    from ranked
    inner join requests on requests.query = ranked.query
    where ranked.base_rank <= %(n_candidates)s
),
personalized_users as (
    select distinct requests.user_id
    from requests inner join analytics.dim_users as users on users.user_id = requests.user_id
    where users.is_personalization_allowed
),
user_items as (
    select interactions.user_id, interactions.item_id,
        sum({event_weight_sql("interactions.event_type")} * power(0.5::double precision,
            extract(epoch from (%(as_of)s - interactions.event_at)) / 86400.0 / %(half_life)s)) as weight
    from analytics.fct_interactions as interactions
    inner join personalized_users on personalized_users.user_id = interactions.user_id
    where interactions.event_at < %(as_of)s
    group by interactions.user_id, interactions.item_id
    having sum({event_weight_sql("interactions.event_type")}) > 0
),
user_item_attributes as (
    select user_items.*, items.category, items.brand, price_bands.price_position
    from user_items
    inner join analytics.dim_items as items on items.item_id = user_items.item_id
    left join price_bands on price_bands.item_id = user_items.item_id
),
user_totals as (
    select user_id, sum(weight) as total_weight,
        sum(weight * price_position) / nullif(sum(weight) filter (where price_position is not null), 0)
            as price_position,
        sum(weight) filter (where price_position is not null) as price_weight
    from user_item_attributes group by user_id
),
user_categories as (
    select user_id, category, sum(weight) as weight from user_item_attributes group by user_id, category
),
user_brands as (
    select user_id, brand, sum(weight) as weight from user_item_attributes
    where brand is not null group by user_id, brand
),
cf_scores as (
    select candidates.search_id, candidates.item_id, sum(user_items.weight * neighbours.score) as weight
    from candidates
    inner join user_items on user_items.user_id = candidates.user_id
    inner join {{similar}} as neighbours
        on neighbours.item_id = user_items.item_id and neighbours.similar_item_id = candidates.item_id
    group by candidates.search_id, candidates.item_id
),
interests as ({{interests}}),
interest_matches as (
    select candidates.search_id, candidates.item_id, max(interests.weight) as weight
    from candidates
    inner join interests on interests.user_id = candidates.user_id
    left join analytics.item_search_tokens as item_tokens
        on item_tokens.item_id = candidates.item_id and interests.term = 'term:' || item_tokens.token
    where item_tokens.item_id is not null or interests.term = 'category:' || candidates.category
    group by candidates.search_id, candidates.item_id
)
select candidates.search_id, candidates.item_id, candidates.base_rank, candidates.category, candidates.brand,
    candidates.text_score,
    candidates.popularity,
    coalesce(user_categories.weight / (user_totals.total_weight + %(prior_weight)s), 0) as category_affinity,
    coalesce(user_brands.weight / (user_totals.total_weight + %(prior_weight)s), 0) as brand_affinity,
    coalesce(
        0.5 + (0.5 - abs(user_totals.price_position - candidates.price_position))
        * user_totals.price_weight / (user_totals.price_weight + %(prior_weight)s),
        0.5
    ) as price_fit,
    coalesce(interest_matches.weight, 0) as search_interest,
    coalesce(cf_scores.weight / user_totals.total_weight, 0) as cf_score
from candidates
left join user_totals on user_totals.user_id = candidates.user_id
left join user_categories
    on user_categories.user_id = candidates.user_id and user_categories.category = candidates.category
left join user_brands on user_brands.user_id = candidates.user_id and user_brands.brand = candidates.brand
left join cf_scores on cf_scores.search_id = candidates.search_id and cf_scores.item_id = candidates.item_id
left join interest_matches
    on interest_matches.search_id = candidates.search_id and interest_matches.item_id = candidates.item_id
order by candidates.search_id, candidates.base_rank
"""


def candidate_features(
    conn: Any,
    as_of: datetime,
    similar_table: str | None,
    interests_sql: str,
    n_candidates: int = 100,
    in_stock_only: bool = False,
) -> pd.DataFrame:
    """Text-match candidates of the searches in ``pg_temp.search_requests`` with their ranker features.

    Parameters
    ----------
    conn : psycopg2 connection
        Connection whose session holds ``pg_temp.search_requests`` (search_id, user_id, query).
    as_of : datetime
        Only events, searches and items before it are used.
    similar_table : str or None
        ``schema.table`` with (item_id, similar_item_id, score): the CF similarity (None or a
        missing table: no CF score).
    interests_sql : str
        A query of (user_id, term, weight): the search-interest profile.
    n_candidates : int, default 100
        Candidates per search: the top of the base order (text score, popularity, item id).
    in_stock_only : bool, default False
        Drop out-of-stock items (serving; evaluation cannot know past stock).

    Returns
    -------
    pandas.DataFrame
        One row per (search_id, item_id): ``base_rank``, ``category``, ``brand`` and :data:`FEATURES`.
    """
    if similar_table is None or not frames.table_exists(conn, similar_table):
        with conn.cursor() as cursor:  # no CF similarity yet (nothing published): every cf_score is 0
            cursor.execute(
                "create temp table if not exists no_similar_items "
                "(item_id text, similar_item_id text, score double precision)"
            )
        similar_table = "pg_temp.no_similar_items"
    schema, name = similar_table.split(".")
    statement = sql.SQL(_FEATURES_SQL).format(similar=sql.Identifier(schema, name), interests=sql.SQL(interests_sql))
    params = {
        "as_of": as_of,
        "half_life": HALF_LIFE_DAYS,
        "fuzzy_min": FUZZY_MIN_LENGTH,
        "fuzzy_weight": FUZZY_WEIGHT,
        "popularity_days": POPULARITY_DAYS,
        "n_candidates": n_candidates,
        "prior_weight": PRIOR_WEIGHT,
        "in_stock_only": in_stock_only,
    }
    with conn.cursor() as cursor:
        # row estimates of a fresh temp table are guesses: JIT would compile for seconds to save milliseconds
        cursor.execute("set local jit = off")
        query = cursor.mogrify(statement.as_string(cursor), params).decode()
    frame = frames.read_frame(conn, query)
    frame["base_rank"] = frame["base_rank"].astype(np.int64)
    frame[list(FEATURES)] = frame[list(FEATURES)].astype(float)
    return frame
