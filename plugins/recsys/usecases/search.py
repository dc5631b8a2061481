"""Personalized search: text match over the warehouse, re-ranked by the user's profile and CF.

Candidates and their features come from :mod:`recsys.usecases.search_features` (text match in SQL,
then popularity). The top ``n_candidates`` of the base order are re-ranked by a pointwise
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
from recsys.evaluation import windows
from recsys.features.interactions import as_datetime, load_interactions
from recsys.models.registry import build_model, load_model_config
from recsys.usecases.search_features import (
    FEATURES,
    HALF_LIFE_DAYS,
    INTERESTS_AS_OF,
    INTERESTS_PUBLISHED,
    N_SIMILAR,
    REQUESTS_DDL,
    SEARCH_DDL,
    candidate_features,
)

logger = logging.getLogger(__name__)

TEXT_MODEL = "search_text_match"
PERSONALIZED_MODEL = "search_personalized"
VARIANT = "search"
SEGMENT = "searches"


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
