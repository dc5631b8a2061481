"""New-user cold start: the evaluation on new users and the lists served to users without events.

The estimators, :class:`~recsys.models.demographic.SegmentPopularityRecommender` (``segment_popularity``)
and :class:`~recsys.models.demographic.DemographicRecommender` (``cold_start_demographic``), live in
:mod:`recsys.models.demographic`; they read the registration data of :func:`read_demographics`.

:func:`evaluate_new_users` scores both and global popularity on the users who
signed up in the test window (see its docstring); :func:`serving_lists` gives
:mod:`recsys.orchestration.publishing` the lists of ``ml.cold_start_recommendations`` and of
the users without events.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from psycopg2 import sql

from recsys.db import frames
from recsys.evaluation.metrics import evaluate, per_user_metrics
from recsys.features.interactions import EVENT_TYPES, SECONDS_PER_DAY, Interactions, Timestamp, to_epoch_seconds
from recsys.models.base import Recommender
from recsys.models.config import ColdStart, Privacy
from recsys.models.demographic import (
    DEMOGRAPHICS,
    SEGMENT_COLUMNS,
    DemographicRecommender,
    SegmentPopularityRecommender,
    segment_keys,
    with_demographics,
)
from recsys.models.popularity import PopularityRecommender
from recsys.models.registry import min_segment_users
from recsys.models.social import FriendsBoughtRecommender
from recsys.serving.rules import BusinessRules, ServingLayers, apply_layers

__all__ = [
    "COLD_START_MODELS",
    "DEMOGRAPHICS",
    "METRIC_NAMES",
    "REASON_CODE",
    "SEGMENT",
    "SEGMENT_COLUMNS",
    "VARIANT",
    "ColdStartLists",
    "DemographicRecommender",
    "SegmentPopularityRecommender",
    "build_models",
    "choose_models",
    "evaluate_new_users",
    "new_user_truth",
    "read_demographics",
    "segment_keys",
    "serving_lists",
    "settings",
    "with_demographics",
]

logger = logging.getLogger(__name__)

#: the cold-start models, simplest first (ties go to the simpler one)
COLD_START_MODELS: tuple[str, ...] = ("popularity", "segment_popularity", "cold_start_demographic", "friends_bought")
#: the models whose lists ``ml.cold_start_recommendations`` can hold (per segment)
SEGMENT_MODELS: tuple[str, ...] = ("segment_popularity", "cold_start_demographic")
#: ``ml.model_evaluations`` keys of the evaluation
SEGMENT, VARIANT = "new_users", "all_items"
#: metrics written per model and cut-off
METRIC_NAMES: tuple[str, ...] = ("ndcg", "precision", "recall", "hit_rate")
#: ``reason_code`` of a list served to a user without events from their segment
REASON_CODE = "new_user_segment"


def read_demographics(conn: Any, user_ids: np.ndarray) -> pd.DataFrame:
    """Registration data of ``user_ids`` from ``analytics.dim_users``, one row per id in that order.

    Parameters
    ----------
    conn : psycopg2 connection
        An open connection.
    user_ids : numpy.ndarray
        Warehouse user ids (for example :attr:`Interactions.user_ids`).

    Returns
    -------
    pandas.DataFrame
        ``signup_ts`` (float epoch seconds, NaN unknown) and the
        :data:`DEMOGRAPHICS` columns (str, ``unknown`` when missing, also for
        a column ``dim_users`` does not have, or for ids not in ``dim_users``).
    """
    with conn.cursor() as cursor:
        cursor.execute(
            "select column_name from information_schema.columns "
            "where table_schema = 'analytics' and table_name = 'dim_users'"
        )
        present = {row[0] for row in cursor.fetchall()}
    columns = [
        sql.SQL("{}::text as {}").format(sql.Identifier(name), sql.Identifier(name))
        if name in present
        else sql.SQL("null::text as {}").format(sql.Identifier(name))
        for name in DEMOGRAPHICS
    ]
    frame = frames.read_frame(
        conn,
        sql.SQL(
            "select user_id, extract(epoch from signup_at)::float8 as signup_ts, {} from analytics.dim_users"
        ).format(sql.SQL(", ").join(columns)),
    ).drop_duplicates("user_id")
    aligned = frame.set_index("user_id").reindex(pd.Index(user_ids, dtype=object))
    signup_ts = pd.to_numeric(aligned["signup_ts"].replace("", None), errors="coerce")
    result = pd.DataFrame({"signup_ts": signup_ts.to_numpy(dtype=np.float64)})
    for name in DEMOGRAPHICS:  # five columns
        values = aligned[name].fillna("unknown").astype(str).str.strip()
        result[name] = values.where(values != "", "unknown").to_numpy(dtype=object)
    return result


# --------------------------------------------------------------------------- evaluation and serving


def settings(config: dict[str, Any]) -> dict[str, Any]:
    """The ``[cold_start]`` section of the model configuration with defaults, plus ``min_segment_users``."""
    section = {**ColdStart().model_dump(), **config.get("cold_start", {})}
    truth_events = tuple(section["truth_events"])
    unknown = set(truth_events) - set(EVENT_TYPES)
    if unknown or not truth_events:
        raise ValueError(f"[cold_start] truth_events must be some of {EVENT_TYPES}, got {list(truth_events)}")
    return {
        "truth_events": truth_events,
        "window_days": section["window_days"],
        "alpha": float(section["alpha"]),
        "segment_weight": float(section["segment_weight"]),
        "first_days": float(section["first_days"]),
        "min_segment_users": int(config.get("privacy", {}).get("min_segment_users", Privacy().min_segment_users)),
    }


def build_models(config: dict[str, Any], horizon_days: float = 0.0) -> list[Recommender]:
    """Global popularity, segment popularity, the demographic model, and the referrer's (and followed people's)
    purchases (``friends_bought``, with the follows made up to ``horizon_days`` after its reference: a new
    user's referral is made at signup)."""
    options = settings(config)
    common = dict(window_days=options["window_days"], min_segment_users=options["min_segment_users"])
    return [
        PopularityRecommender(window_days=options["window_days"]),
        SegmentPopularityRecommender(**common),
        DemographicRecommender(alpha=options["alpha"], segment_weight=options["segment_weight"], **common),
        FriendsBoughtRecommender(follows_horizon_days=horizon_days),
    ]


def new_user_truth(
    data: Interactions,
    demographics: pd.DataFrame,
    cutoff: float,
    end: float,
    first_days: float,
    truth_events: tuple[str, ...] = ("purchase",),
) -> tuple[np.ndarray, sp.csr_array]:
    """The users who signed up in ``[cutoff, end)`` and what they bought in their first days.

    A user is evaluated if their ``signup_at`` is in the window, they have no
    event before ``cutoff`` and at least one event of ``truth_events`` (default
    purchases, the truth of the main evaluation) in ``[signup_at, signup_at +
    first_days)`` before ``end``; those items are the truth.

    Returns
    -------
    users, truth : numpy.ndarray, scipy.sparse.csr_array
        User indices and their ``(len(users), n_items)`` 0/1 purchases.
    """
    signup = demographics["signup_ts"].to_numpy(dtype=np.float64)
    had_history = np.bincount(data.user_index[data.event_ts < cutoff], minlength=data.n_users) > 0
    user_signup = signup[data.user_index]
    with np.errstate(invalid="ignore"):  # unknown signup_at (NaN) is never in the window
        keep = (
            np.isin(data.event_type, [EVENT_TYPES.index(name) for name in truth_events])
            & (user_signup >= cutoff)
            & (user_signup < end)
            & (data.event_ts >= user_signup)
            & (data.event_ts < np.minimum(user_signup + first_days * SECONDS_PER_DAY, end))
            & ~had_history[data.user_index]
        )
    truth = sp.coo_array(
        (np.ones(int(keep.sum())), (data.user_index[keep], data.item_index[keep])), shape=(data.n_users, data.n_items)
    ).tocsr()
    truth.sum_duplicates()
    truth.data[:] = 1.0
    users = np.flatnonzero(np.diff(truth.indptr) > 0).astype(np.int64)
    return users, sp.csr_array(truth[users])


def evaluate_new_users(
    conn: Any,
    data: Interactions,
    cutoff: Timestamp,
    end: Timestamp,
    config: dict[str, Any],
    ks: tuple[int, ...] = (5, 10, 20),
    k: int = 10,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Score the cold-start models on the users who signed up in the test window.

    Every model of :func:`build_models` is fitted on the events before
    ``cutoff`` (its reference time is the instant before; later events are
    ignored) and the demographics of ``analytics.dim_users``, and ranks the
    items with events before ``cutoff`` for the users of
    :func:`new_user_truth`, from their registration data alone.

    Parameters
    ----------
    conn : psycopg2 connection
        Reads ``analytics.dim_users``.
    data : Interactions
        Events up to ``end`` with item side data.
    cutoff, end : timestamp
        The test window.
    config : dict
        Model configuration (``[cold_start]``, ``[privacy]``).
    ks : tuple of int
        Cut-offs.
    k : int, default 10
        Cut-off of ``lift_vs_popularity``.

    Returns
    -------
    rows, summary
        ``ml.model_evaluations`` rows (without ``run_id``): segment
        ``new_users``, variant ``all_items``, metrics :data:`METRIC_NAMES` at
        ``ks``, ``lift_vs_popularity`` at ``k`` (NDCG@k over global
        popularity's) and ``users`` (k 0). With fewer evaluated users than
        ``min_segment_users`` only ``users`` is written (k-anonymity), with
        none nothing. The
        summary has the user count, NDCG@k per model and its paired z against
        global popularity (per-user differences), for XCom and the log.
    """
    options = settings(config)
    cutoff_s, end_s = to_epoch_seconds(cutoff), to_epoch_seconds(end)
    demographics = read_demographics(conn, data.user_ids)
    users, truth = new_user_truth(data, demographics, cutoff_s, end_s, options["first_days"], options["truth_events"])
    # every model reads only events up to the reference, just before the cutoff: no copy of the events needed
    reference = float(np.nextafter(cutoff_s, -np.inf))
    before = data.event_ts < cutoff_s
    unknown_items = np.flatnonzero(np.bincount(data.item_index[before], minlength=data.n_items) == 0)
    common = dict(variant=VARIANT, segment=SEGMENT)
    summary: dict[str, Any] = {"users": int(len(users)), f"ndcg@{k}": {}}
    if not len(users):
        logger.warning("cold start: nobody signed up in the test window and bought in their first days")
        return [], summary
    rows: list[dict[str, Any]] = [
        dict(common, model_name=name, metric="users", k=0, metric_value=float(len(users))) for name in COLD_START_MODELS
    ]
    if len(users) < max(options["min_segment_users"], 1) or not before.any():
        logger.warning(
            "cold start: %d new users with a first-week purchase (need %d): no metrics written",
            len(users),
            options["min_segment_users"],
        )
        return rows, summary
    ks = tuple(sorted({*ks, k}))
    per_user: dict[str, np.ndarray] = {}
    people = with_demographics(data, demographics)
    for model in build_models(config, (end_s - cutoff_s) / SECONDS_PER_DAY):  # four models, one contract
        recommended, _ = model.fit(people, reference).recommend(users, n=max(ks), filter_items=unknown_items)
        scores = evaluate(recommended, truth, ks)
        rows += [
            dict(common, model_name=model.name, metric=metric, k=cut, metric_value=value)
            for (metric, cut), value in scores.items()
            if metric in METRIC_NAMES and math.isfinite(value)
        ]
        per_user[model.name] = per_user_metrics(recommended, truth, k)["ndcg"]
    ndcg = {name: float(values.mean()) for name, values in per_user.items()}
    for name, value in ndcg.items():  # three models
        lift = value / ndcg["popularity"] if ndcg["popularity"] > 0 else float("nan")
        if math.isfinite(lift):
            rows.append(dict(common, model_name=name, metric="lift_vs_popularity", k=k, metric_value=lift))
    summary[f"ndcg@{k}"] = {name: round(value, 6) for name, value in ndcg.items()}
    summary["z_vs_popularity"] = {name: _paired_z(values - per_user["popularity"]) for name, values in per_user.items()}
    logger.info(
        "cold start over %d new users: NDCG@%d %s; paired z vs popularity %s",
        len(users),
        k,
        summary[f"ndcg@{k}"],
        summary["z_vs_popularity"],
    )
    return rows, summary


def _paired_z(difference: np.ndarray) -> float | None:
    """Mean of a per-user difference in standard errors (``None`` when undefined), for logs and XCom."""
    error = float(np.std(difference, ddof=1) / np.sqrt(len(difference))) if len(difference) > 1 else 0.0
    return round(float(np.mean(difference)) / error, 2) if error > 0 else None


def choose_models(conn: Any, run_id: str, k: int = 10) -> tuple[str, str]:
    """The cold-start models of a run from its ``new_users`` evaluation rows.

    Returns
    -------
    table_model, user_model : str
        ``table_model``: the better of ``segment_popularity`` and
        ``cold_start_demographic`` by NDCG@k (ties and no rows:
        ``segment_popularity``), for ``ml.cold_start_recommendations``.
        ``user_model``: that model if its NDCG@k beats global popularity's,
        else ``popularity``, for the users without events.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            "select model_name, metric_value from ml.model_evaluations where run_id = %s and segment = %s "
            "and variant = %s and metric = 'ndcg' and k = %s",
            (run_id, SEGMENT, VARIANT, k),
        )
        ndcg = {name: float(value) for name, value in cursor.fetchall() if value is not None}
    segment_aware = SEGMENT_MODELS
    table_model = max(segment_aware, key=lambda name: (ndcg.get(name, -math.inf), -segment_aware.index(name)))
    beats = ndcg.get(table_model, -math.inf) > ndcg.get("popularity", math.inf)
    return table_model, table_model if beats else "popularity"


@dataclass
class ColdStartLists:
    """What :func:`serving_lists` gives :func:`recsys.orchestration.publishing.generate_recommendations`.

    Attributes
    ----------
    table : pandas.DataFrame
        ``segment_key``, ``item_rank``, ``item_id``, ``score`` of the segment rows of
        ``ml.cold_start_recommendations`` (the caller adds ``all``).
    model_name : str
        The model of the users' lists (``popularity``: nobody gets one).
    served : numpy.ndarray
        Bool per target user: gets a list here (in a k-anonymous segment).
    items, scores : numpy.ndarray
        ``(n_targets, n)`` lists of the target users (rows not served: ``-1``).
    reason_text : numpy.ndarray
        Per target user, "Popular with new shoppers like you (<age band>, <region>)"
        (``<gender>`` instead of the region for segment popularity; unknown values left out).
    """

    table: pd.DataFrame
    model_name: str
    served: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    reason_text: np.ndarray


def serving_lists(
    conn: Any,
    run_id: str,
    data: Interactions,
    end: Timestamp,
    targets: np.ndarray,
    config: dict[str, Any],
    n: int = 20,
    n_table: int = 20,
    filter_items: np.ndarray | None = None,
) -> ColdStartLists:
    """Fit the chosen cold-start model on everything up to ``end``; lists per segment and per target user.

    ``ml.cold_start_recommendations`` gets ``<age_band>|<gender>`` rows for every segment with at least
    ``min_segment_users`` users with events in the window, from the better segment-aware model of the run
    (:func:`choose_models`). The target users (indices into ``data``, the
    users without events) in such a segment get the demographic or segment
    list when that model beat global popularity on the new users; the rest
    keep global popularity.
    """
    end_s = to_epoch_seconds(end)
    table_model, user_model = choose_models(conn, run_id, int(config.get("evaluation", {}).get("k", 10)))
    demographics = read_demographics(conn, data.user_ids)
    global_model, segment_model, demographic_model = build_models(config)[:3]
    model = demographic_model if table_model == demographic_model.name else segment_model
    model.fit(with_demographics(data, demographics), end_s)
    keys, items, scores = model.segment_recommend(n_table, filter_items)
    rows, ranks = np.nonzero(items >= 0)
    table = pd.DataFrame(
        {
            "segment_key": keys[rows],
            "item_rank": ranks + 1,
            "item_id": data.item_ids[items[rows, ranks]],
            "score": scores[rows, ranks],
        }
    )
    target_demographics = demographics.iloc[targets]
    served = (model.segment_of(target_demographics) >= 0) & (user_model != global_model.name)
    user_items = np.full((len(targets), n), -1, dtype=np.int64)
    user_scores = np.full((len(targets), n), np.nan)
    if served.any():
        user_items[served], user_scores[served] = model.recommend(targets[served], n=n, filter_items=filter_items)
    # name what the list depends on: age band and region (demographic model) or age band and gender (segment)
    named = ["age_band", "region" if isinstance(model, DemographicRecommender) else "gender"]
    known = target_demographics[named].where(target_demographics[named] != "unknown")
    attributes = known[named[0]].str.cat(known[named[1]], sep=", ", na_rep="").str.strip(", ")
    reason_text = np.where(
        attributes != "",
        "Popular with new shoppers like you (" + attributes + ")",
        "Popular with new shoppers like you",
    ).astype(object)
    logger.info(
        "cold start: table from %s (%d segments), %d of %d users without events get %s lists",
        model.name,
        len(keys),
        int(served.sum()),
        len(targets),
        user_model,
    )
    return ColdStartLists(table, user_model, served, user_items, user_scores, reason_text)


def segment_lists(
    users: pd.DataFrame,
    data: Interactions,
    popularity: PopularityRecommender,
    blocked: np.ndarray,
    n_cold_start: int,
    rules: BusinessRules,
    layers: ServingLayers,
    config: dict[str, Any],
    model_lists: pd.DataFrame,
    has_events: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cold-start lists (``all``, then every k-anonymous ``age_band|gender``) after the rules and re-rank.

    A segment's list is the cold-start model's (``model_lists``: ``segment_key``, ``item_rank``,
    ``item_id``, ``score`` rows of :func:`recsys.usecases.cold_start.serving_lists`) where it has one, else
    the segment's popularity. Returns the segment per user (``-1``: none published), the keys,
    items and scores.
    """
    segment_labels = (users["age_band"].fillna("unknown") + "|" + users["gender"].fillna("unknown")).to_numpy()
    segment_names, segment_of_user = np.unique(segment_labels.astype(str), return_inverse=True)
    # k-anonymity: a segment's list is published only if at least min_segment_users of its users have events
    with_events = np.bincount(segment_of_user, weights=has_events, minlength=len(segment_names))
    large = with_events >= min_segment_users(config)
    logger.info("cold start: %d of %d segments are large enough to publish", large.sum(), len(large))
    recode = np.where(large, np.cumsum(large) - 1, -1)
    segment_names = segment_names[large]
    group_of_user = np.full(data.n_users, -1, dtype=np.int64)
    group_of_user[: len(users)] = recode[segment_of_user]
    wide = n_cold_start * rules.overfetch
    segment_items, segment_scores = popularity.recommend_groups(group_of_user, wide, blocked)
    all_items, all_scores = popularity.recommend(np.zeros(1, dtype=np.int64), n=wide, filter_items=blocked)
    keys = np.concatenate([["all"], segment_names]).astype(object)
    items, scores = np.vstack([all_items, segment_items]), np.vstack([all_scores, segment_scores])
    row = pd.Index(keys).get_indexer(model_lists["segment_key"])
    rank = model_lists["item_rank"].to_numpy() - 1
    item = pd.Index(data.item_ids).get_indexer(model_lists["item_id"])
    ok = (row > 0) & (rank < wide) & (item >= 0)  # row 0 ("all") stays global popularity
    replaced = np.unique(row[ok])
    items[replaced], scores[replaced] = -1, np.nan
    items[row[ok], rank[ok]], scores[row[ok], rank[ok]] = item[ok], model_lists["score"].to_numpy()[ok]
    cold_items, cold_scores, _ = apply_layers(
        items, scores, n_cold_start, rules, layers.blocked, layers.brands, layers.categories
    )
    return group_of_user, keys, cold_items, cold_scores
