"""Offline evaluation on a time split: the windows, batched ranking, and the metric rows of ``ml.model_evaluations``."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.db import frames
from recsys.evaluation import windows
from recsys.evaluation.metrics import (
    METRICS,
    catalogue_coverage,
    evaluate,
    hit_matrix,
    intra_list_diversity,
    item_set_coverage,
    mae,
    novelty,
    per_user_metrics,
    relevant_counts,
    rmse,
    roc_auc,
)
from recsys.evaluation.windows import TimeSplit, time_split
from recsys.features.interactions import EVENT_WEIGHTS, Interactions, lookup
from recsys.models.base import Recommender
from recsys.models.factorization import SVDRecommender
from recsys.models.ranker import CandidateRanker
from recsys.serving import placements

logger = logging.getLogger(__name__)


#: cut-offs every model is evaluated at
EVAL_KS: tuple[int, ...] = (5, 10, 20)


#: evaluation variant: candidates are all items known at the cutoff (stock status is today's, so not used)
EVAL_VARIANT = "all_items"


#: evaluation variant without repeat purchases: items a user bought before the cutoff leave ranking and truth
NEW_ITEMS_VARIANT = "new_items"


#: evaluation variant of the new catalogue: truth is the purchases of items first sold in the window
#: (:func:`recsys.evaluation.windows.first_sold_truth`), plus ``new_item_coverage``
NEW_CATALOGUE_VARIANT = "new_catalogue"


#: seed of the evaluated users' sample when a window has more than ``[evaluation] max_users`` of them
EVALUATION_SEED = 0


def recommend_in_batches(
    model: Recommender,
    users: np.ndarray,
    n: int,
    batch_size: int,
    filter_items: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``model.recommend`` over ``users`` in batches (memory is bounded by the batch)."""
    items = np.full((len(users), n), -1, dtype=np.int64)
    scores = np.full((len(users), n), np.nan)
    for start in range(0, len(users), batch_size):  # batches of users, each fully vectorized
        batch = users[start : start + batch_size]
        items[start : start + len(batch)], scores[start : start + len(batch)] = model.recommend(
            batch, None, n, filter_items=filter_items
        )
    return items, scores


def user_segmentations(
    conn: Any, user_ids: np.ndarray, prior_purchases: np.ndarray
) -> list[tuple[np.ndarray, list[str]]]:
    """User segments of the evaluation: each a code per user and the segment names.

    ``user_type=new|returning`` (a purchase before the cutoff or not), and
    ``lifecycle_stage=<stage>`` and ``spending_power=<tier>`` from
    ``analytics.user_profiles`` (``unknown`` for users without a profile).
    """
    returning = (prior_purchases > 0).astype(np.int64)
    segmentations = [(returning, ["user_type=new", "user_type=returning"])]
    if not frames.table_exists(conn, "analytics.user_profiles"):
        logger.warning("analytics.user_profiles is missing: no lifecycle or spending segments")
        return segmentations
    profiles = frames.read_frame(conn, "select user_id, lifecycle_stage, spending_power from analytics.user_profiles")
    position = pd.Index(profiles["user_id"]).get_indexer(pd.Index(user_ids))
    for column in ("lifecycle_stage", "spending_power"):  # two profile columns
        values = profiles[column].fillna("unknown").to_numpy()
        labels = np.where(position >= 0, values[np.maximum(position, 0)], "unknown").astype(str)
        names, codes = np.unique(labels, return_inverse=True)
        segmentations.append((codes.astype(np.int64), [f"{column}={name}" for name in names]))
    return segmentations


def json_float(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def evaluation_rows(
    model_name: str,
    variant: str,
    recommended: np.ndarray,
    truth: Any,
    ks: tuple[int, ...],
    segmentations: list[tuple[np.ndarray, list[str]]],
    item_categories: np.ndarray,
    item_popularity: np.ndarray,
    n_users: int,
    min_users: int = 1,
) -> tuple[list[dict[str, Any]], dict[tuple[str, int], float]]:
    """``ml.model_evaluations`` rows of one model and variant.

    Segment ``all`` gets the ranking metrics and catalogue ``coverage``,
    intra-list ``diversity`` (by category) and ``novelty`` (bits); every
    segment of ``segmentations`` with at least ``min_users`` users gets the
    ranking metrics (smaller segments are suppressed: k-anonymity).
    """
    scores = evaluate(recommended, truth, ks)
    common = dict(model_name=model_name, variant=variant)
    rows = [
        dict(common, segment="all", metric=metric, k=cut, metric_value=value) for (metric, cut), value in scores.items()
    ]
    n_items = len(item_categories)
    for cut in ks:  # three cut-offs; every metric below is one vectorized pass over all users
        beyond = {
            "coverage": catalogue_coverage(recommended, n_items, cut),
            "diversity": intra_list_diversity(recommended, item_categories, cut),
            "novelty": novelty(recommended, item_popularity, n_users, cut),
        }
        rows += [dict(common, segment="all", metric=name, k=cut, metric_value=value) for name, value in beyond.items()]
        per_user = per_user_metrics(recommended, truth, cut)
        for codes, names in segmentations:  # a few segmentations
            size = np.bincount(codes, minlength=len(names))
            for metric in METRICS:
                sums = np.bincount(codes, weights=per_user[metric], minlength=len(names))
                rows += [
                    dict(common, segment=names[code], metric=metric, k=cut, metric_value=float(sums[code] / size[code]))
                    for code in np.flatnonzero(size >= min_users)
                ]
    return [row for row in rows if math.isfinite(row["metric_value"])], scores


def without_items(recommended: np.ndarray, exclude: sp.csr_array, width: int) -> np.ndarray:
    """Drop the items of ``exclude`` from every row, shift the rest forward (order kept) and cut at ``width``.

    Parameters
    ----------
    recommended : numpy.ndarray
        Int ``(n_users, wide)`` item indices, best first, ``-1`` for none.
    exclude : scipy.sparse.csr_array
        ``(n_users, n_items)`` items to drop per row.
    width : int
        Columns of the result.

    Returns
    -------
    numpy.ndarray
        Int64 ``(n_users, width)``, ``-1`` where a row ran out.
    """
    keep = (recommended >= 0) & ~hit_matrix(recommended, exclude)
    order = np.argsort(~keep, axis=1, kind="stable")  # kept items first, in their order
    compact = np.take_along_axis(np.where(keep, recommended, -1), order, axis=1)
    out = np.full((recommended.shape[0], width), -1, dtype=np.int64)
    out[:, : min(width, compact.shape[1])] = compact[:, :width]
    return out


def _without_prior(truth: sp.csr_array, prior: sp.csr_array) -> sp.csr_array:
    """The truth without the items of ``prior`` (which may have fewer columns: the train items)."""
    truth = sp.csr_array(truth)
    prior = sp.csr_array((prior.data, prior.indices, prior.indptr), shape=truth.shape)
    result = sp.csr_array(truth - truth.multiply(prior != 0))
    result.eliminate_zeros()
    return result


@dataclass
class EvaluationWindow:
    """One evaluation window: the split and what every model is scored against."""

    split: TimeSplit
    users: np.ndarray
    truth: sp.csr_array
    prior: sp.csr_array
    truth_new: sp.csr_array
    has_new: np.ndarray
    wide: int
    #: each placement's truth (:func:`recsys.serving.placements.truths`) and which users have some
    truths: dict[str, sp.csr_array]
    has: dict[str, np.ndarray]

    @classmethod
    def of(
        cls, data: Interactions, cutoff: float, end: float, ks: tuple[int, ...], max_users: int | None = None
    ) -> EvaluationWindow:
        split = time_split(data, cutoff, end)
        users = split.test_users if split.train.n_events else split.test_users[:0]
        if max_users is not None and len(users) > max_users:  # a fixed-seed sample: the same users on every machine
            users = np.sort(np.random.default_rng(EVALUATION_SEED).choice(users, max_users, replace=False))
        truth = split.truth[users]
        prior = split.train.to_csr({"purchase": 1.0})[users]
        truth_new = _without_prior(truth, prior)
        most_prior = int(np.diff(prior.indptr).max(initial=0))
        wide = min(max(ks) + most_prior, max(split.train.n_items, max(ks)))
        truths = placements.truths(truth, prior)
        has = {placement: relevant_counts(value) > 0 for placement, value in truths.items()}
        return cls(split, users, truth, prior, truth_new, relevant_counts(truth_new) > 0, wide, truths, has)

    def recommend(self, model: Recommender, batch_size: int) -> np.ndarray:
        """Fit ``model`` before the cutoff and rank ``wide`` items for every evaluated user."""
        return self.candidates(model, self.wide, batch_size)[0]

    def candidates(self, model: Recommender, width: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Fit ``model`` before the cutoff; its top ``width`` items and scores for every evaluated user."""
        model.fit(self.split.train, self.split.cutoff)
        return recommend_in_batches(model, self.users, width, batch_size)


def item_categories(train: Interactions) -> np.ndarray:
    """Category code per train item (``-1`` unknown), for diversity."""
    if train.items is None:
        return np.full(train.n_items, -1, dtype=np.int64)
    categories = train.items["category"].replace("", np.nan)
    return pd.factorize(categories, sort=True)[0].astype(np.int64)


def item_popularity(train: Interactions) -> np.ndarray:
    """Share of the train users who interacted with each item, for novelty."""
    pairs = train.to_csr({name: 1.0 for name in EVENT_WEIGHTS})
    users_per_item = np.bincount(pairs.indices, minlength=train.n_items)
    return users_per_item / max(train.n_users, 1)


def catalogue_ids(conn: Any) -> np.ndarray:
    """Every item id of ``analytics.dim_items``: an evaluation's candidates are the catalogue listed by its cutoff."""
    return frames.read_frame(conn, "select item_id from analytics.dim_items order by item_id")["item_id"].to_numpy()


def new_catalogue_rows(
    model_name: str,
    recommended: np.ndarray,
    window: EvaluationWindow,
    ks: tuple[int, ...],
    segmentations: list[tuple[np.ndarray, list[str]]],
    min_users: int = 1,
) -> list[dict[str, Any]]:
    """``ml.model_evaluations`` rows of the ``new_catalogue`` variant of one model.

    The lists are the model's ``all_items`` lists; the truth is each user's purchases in the window of
    items first sold in it, over the users with one. ``new_item_coverage`` (segment ``all``, every k)
    is the share of the window's new catalogue items (:func:`recsys.evaluation.windows.cold_items`:
    listed by the cutoff, no event before it) in any evaluated user's top k.
    """
    train, top = window.split.train, recommended[:, : max(ks)]
    truth = windows.first_sold_truth(train, window.truth)
    has = relevant_counts(truth) > 0
    rows: list[dict[str, Any]] = []
    if has.any():
        rows, _ = evaluation_rows(
            model_name,
            NEW_CATALOGUE_VARIANT,
            top[has],
            truth[has],
            ks,
            [(codes[has], names) for codes, names in segmentations],
            item_categories(train),
            item_popularity(train),
            train.n_users,
            min_users,
        )
    cold = windows.cold_items(train)
    common = dict(model_name=model_name, variant=NEW_CATALOGUE_VARIANT, segment="all", metric="new_item_coverage")
    coverage = [dict(common, k=cut, metric_value=item_set_coverage(top, cold, cut)) for cut in ks]
    return rows + [row for row in coverage if math.isfinite(row["metric_value"])]


def pair_rows(model: Recommender, window: EvaluationWindow, batch_size: int) -> list[dict[str, Any]]:
    """Pair-level metrics: ROC-AUC of a ranker's candidate scores, RMSE/MAE of a rating model (k 0).

    A ranker scores the users in batches of ``batch_size``, as :func:`recommend_in_batches` does.
    """
    common = dict(model_name=model.name, variant=EVAL_VARIANT, segment="all", k=0)
    values: dict[str, float] = {}
    if isinstance(model, CandidateRanker):  # in the batches of its lists: their candidate frames are shared
        starts = range(0, len(window.users), batch_size)
        pairs = [model.score_candidates(window.users[first : first + batch_size]) for first in starts]
        rows = np.concatenate([part[0] + first for part, first in zip(pairs, starts, strict=True)])
        items, scores = (np.concatenate([part[column] for part in pairs]) for column in (1, 2))
        labels = lookup(window.truth, rows, items) > 0
        values["roc_auc"] = roc_auc(scores, labels)
    if isinstance(model, SVDRecommender) and window.split.test_ratings is not None:
        ratings = window.split.test_ratings
        predicted = model.predict(ratings["user_index"].to_numpy(), ratings["item_index"].to_numpy())
        values["rmse"] = rmse(predicted, ratings["rating"].to_numpy())
        values["mae"] = mae(predicted, ratings["rating"].to_numpy())
    return [dict(common, metric=name, metric_value=value) for name, value in values.items() if math.isfinite(value)]
