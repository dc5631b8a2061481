"""Personalized search: text match over the warehouse, re-ranked by the user's profile and CF.

Matching runs in SQL against ``analytics.item_search_tokens`` (the dbt search
index: tokens of item name, category path and brand). A query token matches an
item token exactly (weight 1) or within one edit (weight :data:`FUZZY_WEIGHT`:
the two tokens share a one-character deletion, which catches one substituted,
inserted, dropped or swapped letter; tokens of 5+ characters only). This is
plain SQL: ``pg_trgm`` is not in the embedded pgserver build, so it is not
relied on. An item's text score is the mean over the query's tokens of its best
match. The base order is text score, then popularity (event-weighted
interactions of the last :data:`POPULARITY_DAYS`).

The top ``n_candidates`` of the base order are re-ranked by a pointwise
logistic regression over :data:`FEATURES`, all computed from data strictly
before an ``as_of`` time: text score, popularity, the user's category and brand
affinity (decayed event weights), price fit (the user's usual price position
within a subcategory against the item's), search-interest match (the user's
earlier searches, ``analytics.user_search_interests``) and a CF score (the
user's history through an item-to-item similarity table).

:func:`evaluate_search` (the DAG task ``evaluate_search``) fits the ranker on the
searches of the validation window (features as of the validation cutoff) and
scores held-out searches of the test window (features as of the test cutoff;
``analytics.*`` profiles are as of the run end, so they are recomputed point in
time here). :func:`search` serves one query for one shop user.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from psycopg2 import sql
from sklearn.linear_model import LogisticRegression

from recsys.db import frames, runs
from recsys.db.warehouse import dbt_vars
from recsys.evaluation import windows
from recsys.features.interactions import as_datetime, event_weight_sql, load_interactions
from recsys.models.registry import build_model, load_model_config

logger = logging.getLogger(__name__)

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
TEXT_MODEL = "search_text_match"
PERSONALIZED_MODEL = "search_personalized"
VARIANT = "search"
SEGMENT = "searches"
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


class SearchRanker:
    """Pointwise logistic regression on standardized :data:`FEATURES` (label: the item chosen after a search).

    Parameters
    ----------
    C : float, default 1.0
        Inverse L2 regularization strength.

    Attributes
    ----------
    center_, scale_ : numpy.ndarray
        Feature means and standard deviations (1 where constant) of the training rows.
    coef_ : numpy.ndarray
        One coefficient per standardized feature.
    intercept_ : float
    """

    def __init__(self, C: float = 1.0) -> None:
        self.C = C

    def fit(self, features: pd.DataFrame, chosen: np.ndarray) -> SearchRanker:
        """Fit on candidate rows; ``chosen`` is 1 for the item the user went on to pick, else 0."""
        values = features[list(FEATURES)].to_numpy(dtype=float)
        self.center_ = values.mean(axis=0)
        scale = values.std(axis=0)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        model = LogisticRegression(C=self.C, max_iter=1000).fit((values - self.center_) / self.scale_, chosen)
        self.coef_, self.intercept_ = model.coef_[0], float(model.intercept_[0])
        return self

    def contributions(self, features: pd.DataFrame) -> np.ndarray:
        """Per row and feature, coefficient x standardized value (their sum plus the intercept is the score)."""
        values = features[list(FEATURES)].to_numpy(dtype=float)
        return (values - self.center_) / self.scale_ * self.coef_

    def score(self, features: pd.DataFrame) -> np.ndarray:
        """The ranker's log-odds of each row."""
        return self.contributions(features).sum(axis=1) + self.intercept_

    def to_frame(self, run_id: str) -> pd.DataFrame:
        """The rows of ``ml.search_ranker`` (``intercept`` as a feature with center 0, scale 1)."""
        return pd.DataFrame(
            {
                "run_id": run_id,
                "feature": [*FEATURES, "intercept"],
                "center": [*self.center_, 0.0],
                "scale": [*self.scale_, 1.0],
                "coefficient": [*self.coef_, self.intercept_],
            }
        )

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> SearchRanker:
        """A ranker from ``ml.search_ranker`` rows of one run."""
        rows = frame.set_index("feature")
        ranker = cls()
        ranker.center_ = rows.loc[list(FEATURES), "center"].to_numpy(dtype=float)
        ranker.scale_ = rows.loc[list(FEATURES), "scale"].to_numpy(dtype=float)
        ranker.coef_ = rows.loc[list(FEATURES), "coefficient"].to_numpy(dtype=float)
        ranker.intercept_ = float(rows.loc["intercept", "coefficient"])
        return ranker


def rerank(candidates: pd.DataFrame, scores: np.ndarray) -> np.ndarray:
    """1-based rank of each candidate within its search by score (ties: base rank)."""
    order = pd.DataFrame(
        {"search_id": candidates["search_id"].to_numpy(), "score": -scores, "base": candidates["base_rank"].to_numpy()}
    )
    order = order.sort_values(["search_id", "score", "base"], kind="stable")
    ranks = order.groupby("search_id", sort=False).cumcount().to_numpy() + 1
    out = np.empty(len(order), dtype=np.int64)
    out[order.index.to_numpy()] = ranks
    return out


def rank_metrics(ranks: np.ndarray, k: int = 10) -> dict[str, float]:
    """MRR, NDCG@k and hit rate@k of one chosen item per search at the given 1-based ranks (0: not ranked).

    With a single relevant item the ideal DCG is 1, so NDCG@k = 1 / log2(rank + 1) for ranks <= k.
    """
    ranks = np.asarray(ranks, dtype=float)
    ranked = ranks > 0
    reciprocal = np.where(ranked, 1.0 / np.where(ranked, ranks, 1.0), 0.0)
    within = ranked & (ranks <= k)
    return {
        "mrr": float(reciprocal.mean()),
        "ndcg": float(np.where(within, 1.0 / np.log2(np.where(within, ranks, 1.0) + 1.0), 0.0).mean()),
        "hit_rate": float(within.mean()),
        "searches": float(len(ranks)),
    }


# --------------------------------------------------------------------------- evaluation

_LABELLED_SEARCHES = """
with searches as (
    select search_id, user_id, query, session_id, searched_at,
        lead(searched_at) over (partition by session_id order by searched_at, search_id) as next_searched_at
    from analytics.fct_searches
    where session_id is not null and searched_at >= %(start)s and searched_at < %(stop)s
)
select searches.search_id, searches.user_id, searches.query
from searches
where exists (
    select from analytics.fct_interactions as interactions
    where interactions.session_id = searches.session_id and interactions.user_id = searches.user_id
        and interactions.event_type in ('view', 'cart', 'purchase')
        and interactions.event_at > searches.searched_at and interactions.event_at < %(stop)s
        and interactions.event_at < coalesce(searches.next_searched_at, 'infinity')
)
order by md5(searches.search_id)
limit %(max_searches)s
"""

_FOLLOW_UPS = """
with searches as (
    select searches.search_id, searches.user_id, searches.session_id, searches.searched_at,
        lead(searches.searched_at) over (
            partition by searches.session_id order by searches.searched_at, searches.search_id
        ) as next_searched_at
    from analytics.fct_searches as searches
    where searches.session_id is not null and searches.searched_at >= %(start)s and searches.searched_at < %(stop)s
)
select searches.search_id, interactions.item_id,
    case interactions.event_type when 'purchase' then 3 when 'cart' then 2 else 1 end as strength,
    extract(epoch from interactions.event_at) as event_ts
from searches
inner join pg_temp.search_requests as requests on requests.search_id = searches.search_id
inner join analytics.fct_interactions as interactions
    on interactions.session_id = searches.session_id and interactions.user_id = searches.user_id
where interactions.event_type in ('view', 'cart', 'purchase')
    and interactions.event_at > searches.searched_at and interactions.event_at < %(stop)s
    and interactions.event_at < coalesce(searches.next_searched_at, 'infinity')
"""


def _write_similar(conn: Any, as_of: float, config: dict[str, Any]) -> str:
    """Item-KNN (the ``item_knn`` parameters of the configuration) on events before ``as_of``, to a temp table."""
    data = load_interactions(conn, None, as_of)
    knn = build_model("item_knn", config["models"].get("item_knn", {}).get("params", {}), config).fit(data, as_of)
    similar, scores = knn.similar_items(N_SIMILAR)
    rows, ranks = np.nonzero(similar >= 0)
    with conn.cursor() as cursor:
        cursor.execute(
            "drop table if exists pg_temp.search_similar;"
            "create temp table search_similar (item_id text, similar_item_id text, score double precision)"
        )
    frames.copy_frame(
        conn,
        "pg_temp.search_similar",
        pd.DataFrame(
            {
                "item_id": data.item_ids[rows],
                "similar_item_id": data.item_ids[similar[rows, ranks]],
                "score": scores[rows, ranks],
            }
        ),
    )
    with conn.cursor() as cursor:
        cursor.execute("create index on pg_temp.search_similar (item_id, similar_item_id)")
        cursor.execute("analyze pg_temp.search_similar")
    return "pg_temp.search_similar"


def labelled_searches(
    conn: Any, start: float, stop: float, config: dict[str, Any], n_candidates: int, max_searches: int
) -> pd.DataFrame:
    """Candidates with features as of ``start`` for the searches in ``[start, stop)`` followed by a choice.

    A search is held out when, in its session after it (and before the session's next search and
    ``stop``), the user viewed, carted or bought one of its ``n_candidates`` text matches; the chosen
    item is the strongest such event's (purchase > cart > view), the earliest on ties. Returns
    :func:`candidate_features` rows of those searches with a 0/1 column ``chosen``.
    """
    window = {"start": as_datetime(start), "stop": as_datetime(stop), "max_searches": max_searches}
    with conn.cursor() as cursor:
        cursor.execute(REQUESTS_DDL)
        cursor.execute(
            sql.SQL("insert into pg_temp.search_requests (search_id, user_id, query) {}").format(
                sql.SQL(_LABELLED_SEARCHES)
            ),
            window,
        )
        if cursor.rowcount == 0:  # no search followed by an event: nothing to fit or score
            return pd.DataFrame(columns=["search_id", "item_id", "base_rank", "category", "brand", *FEATURES, "chosen"])
        cursor.execute("analyze pg_temp.search_requests")
    similar = _write_similar(conn, start, config)
    with conn.cursor() as cursor:
        interests = cursor.mogrify(INTERESTS_AS_OF, {"as_of": window["start"], "half_life": HALF_LIFE_DAYS}).decode()
    candidates = candidate_features(conn, window["start"], similar, interests, n_candidates)
    with conn.cursor() as cursor:
        follow_ups = frames.read_frame(conn, cursor.mogrify(_FOLLOW_UPS, window).decode())
    follow_ups = follow_ups.astype({"strength": int, "event_ts": float})
    choices = follow_ups.merge(candidates[["search_id", "item_id"]], on=["search_id", "item_id"])
    choices = choices.sort_values(["search_id", "strength", "event_ts"], ascending=[True, False, True])
    choices = choices.drop_duplicates("search_id")[["search_id", "item_id"]].assign(chosen=1)
    candidates = candidates[candidates["search_id"].isin(choices["search_id"])]
    candidates = candidates.merge(choices, on=["search_id", "item_id"], how="left")
    candidates["chosen"] = candidates["chosen"].fillna(0).astype(int)
    return candidates


def evaluate_search(
    conn: Any,
    run_id: str,
    data_interval_end: datetime,
    config: dict[str, Any] | None = None,
    n_candidates: int = 100,
    max_searches: int = 20_000,
) -> dict[str, Any]:
    """Fit the search ranker before the test cutoff and compare it with text match on held-out searches.

    With ``end = data_interval_end``, ``test_cutoff = end - test_days`` and ``validation_cutoff =
    test_cutoff - validation_days`` (``[evaluation]`` of the model configuration): the ranker is
    fitted on the labelled searches (:func:`labelled_searches`) of ``[validation_cutoff,
    test_cutoff)`` with features as of ``validation_cutoff``, and scored on those of ``[test_cutoff,
    end)`` with features as of ``test_cutoff``. ``ml.model_evaluations`` gets, for
    ``search_text_match`` (the base order) and ``search_personalized`` (the re-ranked order),
    variant ``search``, segment ``searches``: ``mrr`` (k 0), ``ndcg`` and ``hit_rate`` (k 10) and
    ``searches`` (k 0). The ranker refitted on both windows goes to ``ml.search_ranker`` for
    :func:`search`. A re-run replaces the run's rows. Each window reads at most ``max_searches``
    searches (a deterministic sample).

    Returns
    -------
    dict
        JSON-safe summary for XCom: searches per window and MRR per model.
    """
    config = load_model_config() if config is None else config
    validation_cutoff, test_cutoff, end = windows.cutoffs(config, data_interval_end)
    with frames.connection(conn) as connection, runs.run_step(connection, run_id):
        runs.ensure_schema(connection)
        with connection.cursor() as cursor:
            cursor.execute(SEARCH_DDL)
        train = labelled_searches(connection, validation_cutoff, test_cutoff, config, n_candidates, max_searches)
        test = labelled_searches(connection, test_cutoff, end, config, n_candidates, max_searches)
        runs.delete_run(connection, ["ml.model_evaluations"], run_id, variant=VARIANT)
        runs.delete_run(connection, ["ml.search_ranker"], run_id)
        if train["chosen"].nunique() < 2 or test.empty:  # e.g. a shop without search events
            reason = (
                f"too few searches followed by a matching choice ({train['search_id'].nunique()} in the "
                f"validation window, {test['search_id'].nunique()} in the test window): search not evaluated"
            )
            logger.warning("run %s: %s", run_id, reason)
            return {"run_id": run_id, "skipped": reason}
        ranker = SearchRanker().fit(train, train["chosen"].to_numpy())
        chosen = test[test["chosen"] == 1]
        after = rerank(test, ranker.score(test))[test["chosen"].to_numpy() == 1]
        metrics = {TEXT_MODEL: rank_metrics(chosen["base_rank"].to_numpy()), PERSONALIZED_MODEL: rank_metrics(after)}
        rows = pd.DataFrame(
            [
                {
                    "run_id": run_id,
                    "model_name": model_name,
                    "variant": VARIANT,
                    "segment": SEGMENT,
                    "metric": metric,
                    "k": 10 if metric in ("ndcg", "hit_rate") else 0,
                    "metric_value": value,
                }
                for model_name, values in metrics.items()  # two models x four metrics
                for metric, value in values.items()
            ]
        )
        served = SearchRanker().fit(
            pd.concat([train, test], ignore_index=True), np.r_[train["chosen"].to_numpy(), test["chosen"].to_numpy()]
        )
        frames.copy_frame(connection, "ml.model_evaluations", rows)
        frames.copy_frame(connection, "ml.search_ranker", served.to_frame(run_id))
    logger.info("run %s search MRR: %s", run_id, {name: round(value["mrr"], 4) for name, value in metrics.items()})
    return {
        "run_id": run_id,
        "train_searches": int(train["search_id"].nunique()),
        "test_searches": int(chosen["search_id"].nunique()),
        "mrr": {name: value["mrr"] for name, value in metrics.items()},
        "ndcg": {name: value["ndcg"] for name, value in metrics.items()},
        "coefficients": dict(zip(FEATURES, np.round(ranker.coef_, 4).tolist(), strict=True)),
    }


# --------------------------------------------------------------------------- serving

_REASONS = {
    "text_score": "matches your search",
    "popularity": "popular right now",
    "category_affinity": "you often shop {category}",
    "brand_affinity": "you like {brand}",
    "price_fit": "in your usual price range",
    "search_interest": "like your earlier searches",
    "cf_score": "similar to items you viewed",
}


def reasons_of(candidates: pd.DataFrame, contributions: np.ndarray | None) -> pd.Series:
    """The reason of each row: the feature lifting it most above the other matches of its search.

    A contribution counts relative to its search's mean (what moves an item up the list); a row that
    nothing lifts above the mean gets "matches your search".
    """
    if contributions is None:
        return pd.Series("matches your search", index=candidates.index)
    lift = contributions - pd.DataFrame(contributions).groupby(candidates["search_id"].to_numpy()).transform("mean")
    lift = lift.to_numpy()
    strongest = np.asarray(FEATURES, dtype=object)[lift.argmax(axis=1)]
    strongest[lift.max(axis=1) <= 1e-12] = "text_score"
    reasons = pd.Series(strongest, index=candidates.index).map(_REASONS)
    category = strongest == "category_affinity"
    brand = strongest == "brand_affinity"
    reasons[category] = "you often shop " + candidates["category"][category].fillna("")
    reasons[brand] = "you like " + candidates["brand"][brand].fillna("")
    return reasons


def _latest_ranker(conn: Any) -> SearchRanker | None:
    if not frames.table_exists(conn, "ml.search_ranker"):
        return None
    rows = frames.read_frame(
        conn,
        """select ranker.feature, ranker.center, ranker.scale, ranker.coefficient from ml.search_ranker as ranker
        where ranker.run_id = (
            select rankers.run_id from ml.search_ranker as rankers
            left join ml.runs as runs on runs.run_id = rankers.run_id
            order by runs.data_interval_end desc nulls last, rankers.run_id desc limit 1)""",
    )
    return SearchRanker.from_frame(rows) if len(rows) else None


def search(conn: Any, shop_user_id: str | None, query: str, n: int = 20, n_candidates: int = 100) -> pd.DataFrame:
    """Search the catalogue for a shop user: in-stock text matches re-ranked by the user's profile.

    Features are as of the newest event in the warehouse; the CF score reads ``recs.similar_items``,
    the search interests ``analytics.user_search_interests``, the ranker the newest
    ``ml.search_ranker`` (without one: the text match order, text score then popularity). An
    anonymous user (``shop_user_id`` None) or one who opted out of personalization gets neutral
    personal features: only text score and popularity move items.

    Parameters
    ----------
    conn : psycopg2 connection or str
        Warehouse connection or DSN.
    shop_user_id : str or None
        The shop's own user id (resolved through ``identity.published_user_id_map``).
    query : str
        Free search text.
    n : int, default 20
        Rows returned.
    n_candidates : int, default 100
        Text matches re-ranked.

    Returns
    -------
    pandas.DataFrame
        ``rank``, ``item_id``, ``item_name``, ``category``, ``brand``, ``price``, ``text_rank``,
        ``score`` and ``reason``, best first.

    Raises
    ------
    ValueError
        Empty query, or a shop user id that is not in the warehouse.
    """
    if not query or not query.strip():
        raise ValueError("empty search query")
    with frames.connection(conn) as connection:
        user_id = None
        if shop_user_id is not None:
            found = frames.read_frame(
                connection,
                sql.SQL("select user_id from identity.published_user_id_map where shop_user_id = {}")
                .format(sql.Literal(shop_user_id.strip()))
                .as_string(connection),
            )
            if found.empty:
                raise ValueError(f"user {shop_user_id!r} is not in the warehouse (unknown, erased, or no run yet)")
            user_id = found["user_id"].iloc[0]
        with connection.cursor() as cursor:
            cursor.execute(REQUESTS_DDL)
            cursor.execute("insert into pg_temp.search_requests values ('query', %s, %s)", (user_id, query))
            cursor.execute("analyze pg_temp.search_requests")
            cursor.execute("select max(event_at) + interval '1 microsecond' from analytics.fct_interactions")
            as_of = cursor.fetchone()[0] or datetime.now().astimezone()
        candidates = candidate_features(
            connection, as_of, "recs.similar_items", INTERESTS_PUBLISHED, n_candidates, in_stock_only=True
        )
        items = frames.read_frame(
            connection,
            sql.SQL("select item_id, item_name, price from analytics.dim_items where item_id in ({})")
            .format(sql.SQL(", ").join(map(sql.Literal, candidates["item_id"].tolist() or [""])))
            .as_string(connection),
        )
        ranker = _latest_ranker(connection)
        with connection.cursor() as cursor:
            cursor.execute("drop table if exists pg_temp.search_requests, pg_temp.no_similar_items")
    if ranker is None:
        scores, contributions = -candidates["base_rank"].to_numpy(dtype=float), None
    else:
        contributions = ranker.contributions(candidates)
        scores = contributions.sum(axis=1) + ranker.intercept_
    candidates = candidates.assign(
        rank=rerank(candidates, scores), score=scores, reason=reasons_of(candidates, contributions)
    )
    result = candidates.merge(items, on="item_id", how="left").sort_values("rank").head(n)
    result = result.rename(columns={"base_rank": "text_rank"})
    return result[
        ["rank", "item_id", "item_name", "category", "brand", "price", "text_rank", "score", "reason"]
    ].reset_index(drop=True)
