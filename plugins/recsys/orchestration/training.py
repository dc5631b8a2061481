"""Model tasks the Airflow DAG calls: time-split evaluation and publishing lists to ``ml``.

Both entry points take a psycopg2 connection (or a DSN), a ``run_id`` and the
data interval, read ``analytics.*`` with ``COPY ... TO STDOUT``, and write the
``ml`` tables of ``docs/CONTRACTS.md`` with ``COPY ... FROM STDIN``. Each call
is one transaction that first deletes the rows of its ``run_id``, so a re-run
replaces them and readers see either the old or the new rows. "Now" is always
``data_interval_end``, never the wall clock (only the audit columns
``started_at``/``finished_at`` of ``ml.runs`` are wall-clock times).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.db import frames, runs
from recsys.evaluation import windows
from recsys.evaluation.metrics import (
    METRICS,
    catalogue_coverage,
    category_coverage,
    evaluate,
    hit_matrix,
    intra_list_diversity,
    mae,
    novelty,
    per_user_metrics,
    relevant_counts,
    rmse,
    roc_auc,
)
from recsys.features.interactions import (
    EVENT_WEIGHTS,
    SECONDS_PER_DAY,
    Interactions,
    TimeSplit,
    Timestamp,
    as_datetime,
    load_interactions,
    lookup,
    time_split,
    to_epoch_seconds,
)
from recsys.models import config as model_config
from recsys.models.base import Recommender, fill_from_ranking
from recsys.models.factorization import ALSRecommender, SVDRecommender
from recsys.models.knn import ItemKNNRecommender, UserKNNRecommender
from recsys.models.lgbm_ranker import LightGBMRanker
from recsys.models.popularity import PopularityRecommender, RepeatPurchaseRecommender
from recsys.models.ranker import CANDIDATE_MODELS, CandidateRanker, NeuralRanker
from recsys.models.registry import ESTIMATORS
from recsys.models.sequence import SequenceRecommender
from recsys.serving import reasons as reasons_module
from recsys.serving import rules as rules_module
from recsys.serving.rules import BusinessRules, load_business_rules
from recsys.usecases import cold_start

logger = logging.getLogger(__name__)

#: cut-offs every model is evaluated at
EVAL_KS: tuple[int, ...] = (5, 10, 20)
#: evaluation variant: candidates are all items known at the cutoff (stock status is today's, so not used)
EVAL_VARIANT = "all_items"
#: evaluation variant without repeat purchases: items a user bought before the cutoff leave ranking and truth
NEW_ITEMS_VARIANT = "new_items"

#: the models, hyperparameters, search grids and champion rule (override with ``RECSYS_MODEL_CONFIG``)
MODEL_CONFIG = Path(__file__).parents[1] / "models" / "models.toml"

#: seed of the evaluated users' sample when a window has more than ``[evaluation] max_users`` of them
EVALUATION_SEED = 0

#: the champion must beat these (``[champion] baselines`` of the configuration)
BASELINES: tuple[str, ...] = (PopularityRecommender.name, RepeatPurchaseRecommender.name)


#: ``reason_code`` and ``reason_text`` of a row the champion ranked that no grounded reason of
#: :mod:`recsys.serving.reasons` explains (those come first for every model)
REASON_CODES: dict[str, str] = {
    ItemKNNRecommender.name: "similar_items",
    RepeatPurchaseRecommender.name: "past_purchases",
    UserKNNRecommender.name: "similar_users",
    ALSRecommender.name: "matrix_factorization",
    SVDRecommender.name: "rated_by_similar_shoppers",
    NeuralRanker.name: "profile_match",
    LightGBMRanker.name: "profile_match",
    SequenceRecommender.name: "next_in_sequence",
}
#: where a position of a list came from, carried through the business rules and the re-rank
_FROM_FILL, _FROM_MODEL, _FROM_COLD_START = 0, 1, 2

FALLBACK_TEXTS: dict[str, str] = {
    ItemKNNRecommender.name: "Similar to items you looked at",
    RepeatPurchaseRecommender.name: "Based on your past purchases",
    UserKNNRecommender.name: "Popular with shoppers like you",
    ALSRecommender.name: "Matches your taste",
    SVDRecommender.name: "Rated highly by shoppers with your taste",
    NeuralRanker.name: "Picked for you",
    LightGBMRanker.name: "Picked for you",
    SequenceRecommender.name: "Often chosen next after your recent items",
}


# --------------------------------------------------------------------------- evaluation


def _recommend_in_batches(
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


def load_model_config(path: str | Path | None = None) -> dict[str, Any]:
    """Read the model configuration (:data:`MODEL_CONFIG`, or ``RECSYS_MODEL_CONFIG``, or ``path``).

    Returns
    -------
    dict
        ``evaluation``, ``champion`` and ``models`` (``{name: {"params": ..., "search": ...}}``).

    Raises
    ------
    ValueError
        For an unknown section, key, model or model parameter (see :mod:`recsys.models.config`).
    """
    path = Path(path or os.environ.get("RECSYS_MODEL_CONFIG") or MODEL_CONFIG)
    with path.open("rb") as handle:
        return model_config.validate(tomllib.load(handle), path, ESTIMATORS)


def min_segment_users(config: dict[str, Any]) -> int:
    """k of k-anonymity: segment-level outputs need at least this many users (``[privacy] min_segment_users``)."""
    return int(config.get("privacy", {}).get("min_segment_users", 50))


def _params(spec: dict[str, Any]) -> dict[str, Any]:
    """TOML values as estimator parameters (arrays become tuples, as scikit-learn expects)."""
    return {name: tuple(value) if isinstance(value, list) else value for name, value in spec.items()}


def build_model(name: str, params: dict[str, Any], config: dict[str, Any]) -> Recommender:
    """One estimator from its name and parameters; a learned ranker gets the other models as candidates."""
    if issubclass(ESTIMATORS[name], CandidateRanker):
        candidates = [
            build_model(other, spec.get("params", {}), config)
            for other, spec in config["models"].items()
            if other in CANDIDATE_MODELS
        ]
        return ESTIMATORS[name](candidate_models=candidates, **_params(params))
    return ESTIMATORS[name](**_params(params))


def default_models(config: dict[str, Any] | None = None) -> list[Recommender]:
    """The models of the configuration with their ``params``, in file order (ties go to the earlier one)."""
    config = load_model_config() if config is None else config
    return [build_model(name, spec.get("params", {}), config) for name, spec in config["models"].items()]


def search_trials(config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every model's ``params``, then its grid, in file order.

    The grid of a model is every combination of, for each parameter in its
    ``search``, the configured value and the searched ones.
    """
    trials = [(name, dict(spec.get("params", {}))) for name, spec in config["models"].items()]
    for name, spec in config["models"].items():  # a handful of models, each a small grid
        params, grid = spec.get("params", {}), spec.get("search", {})
        axes = [list(dict.fromkeys([params.get(key), *values])) for key, values in grid.items()]
        for values in itertools.product(*axes):
            point = {**params, **dict(zip(grid, values, strict=True))}
            point = {key: value for key, value in point.items() if value is not None}
            if point != params:
                trials.append((name, point))
    return trials


def _segmentations(conn: Any, user_ids: np.ndarray, prior_purchases: np.ndarray) -> list[tuple[np.ndarray, list[str]]]:
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


def _json_float(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def champion_gate(
    per_user_ndcg: dict[str, np.ndarray], baselines: Sequence[str], k: int, min_z: float = 1.645
) -> tuple[str, str]:
    """Choose the model to publish from the validation users' NDCG@k (one array per model, same users).

    The best model by mean NDCG@k wins if it is a baseline, or if it beats
    every baseline: the mean of its per-user NDCG@k minus the baseline's is
    more than ``min_z`` standard errors above zero (a one-sided paired test on
    the same users). Otherwise the best baseline is published. Ties keep the
    model listed first (the simpler one).

    Returns
    -------
    champion, reason : str
        The reason states the means and the test, for ``recs.runs``.
    """
    means = {name: float(np.mean(values)) if len(values) else float("nan") for name, values in per_user_ndcg.items()}
    present = [name for name in baselines if name in means] or list(means)[:1]
    if not any(math.isfinite(value) for value in means.values()):
        return present[0], f"no purchases in the validation window to choose on; keeping the {present[0]} baseline"
    ordered = sorted(means, key=lambda name: -(means[name] if math.isfinite(means[name]) else -math.inf))
    best, best_baseline = ordered[0], next(name for name in ordered if name in present)
    ranking = ", ".join(f"{name} {means[name]:.4f}" for name in ordered)
    n_users = len(per_user_ndcg[best])
    summary = f"validation NDCG@{k} over {n_users} users: {ranking}"
    if best in present:
        return best, f"{best} (baseline) is best; {summary}"
    verdicts = []
    for baseline in present:  # two baselines
        difference = per_user_ndcg[best] - per_user_ndcg[baseline]
        error = float(np.std(difference, ddof=1) / np.sqrt(len(difference))) if len(difference) > 1 else 0.0
        z = float(np.mean(difference) / error) if error > 0 else (math.inf if np.mean(difference) > 0 else 0.0)
        verdicts.append((baseline, z))
    tests = ", ".join(f"z={z:.2f} vs {baseline}" for baseline, z in verdicts)
    if all(z > min_z for _, z in verdicts):
        return best, f"{best} beats the baselines ({tests}; needs z > {min_z}); {summary}"
    return best_baseline, (
        f"{best} is best but not significantly better than every baseline ({tests}; needs z > {min_z}): "
        f"publishing the best baseline {best_baseline}; {summary}"
    )


def _evaluation_rows(
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


def _without_items(recommended: np.ndarray, exclude: sp.csr_array, width: int) -> np.ndarray:
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
class _Window:
    """One evaluation window: the split and what every model is scored against."""

    split: TimeSplit
    users: np.ndarray
    truth: sp.csr_array
    prior: sp.csr_array
    truth_new: sp.csr_array
    has_new: np.ndarray
    wide: int

    @classmethod
    def of(
        cls, data: Interactions, cutoff: float, end: float, ks: tuple[int, ...], max_users: int | None = None
    ) -> _Window:
        split = time_split(data, cutoff, end)
        users = split.test_users if split.train.n_events else split.test_users[:0]
        if max_users is not None and len(users) > max_users:  # a fixed-seed sample: the same users on every machine
            users = np.sort(np.random.default_rng(EVALUATION_SEED).choice(users, max_users, replace=False))
        truth = split.truth[users]
        prior = split.train.to_csr({"purchase": 1.0})[users]
        truth_new = _without_prior(truth, prior)
        most_prior = int(np.diff(prior.indptr).max(initial=0))
        wide = min(max(ks) + most_prior, max(split.train.n_items, max(ks)))
        return cls(split, users, truth, prior, truth_new, relevant_counts(truth_new) > 0, wide)

    def recommend(self, model: Recommender, batch_size: int) -> np.ndarray:
        """Fit ``model`` before the cutoff and rank ``wide`` items for every evaluated user."""
        return self.candidates(model, self.wide, batch_size)[0]

    def candidates(self, model: Recommender, width: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Fit ``model`` before the cutoff; its top ``width`` items and scores for every evaluated user."""
        model.fit(self.split.train, self.split.cutoff)
        return _recommend_in_batches(model, self.users, width, batch_size)


@dataclass
class _Serving:
    """The serving layers as known at a window's cutoff, to score lists as a shopper would have seen them.

    Stock is today's, so every item counts as in stock; deny lists, the
    brand cap, recent purchases before the cutoff (outside repeat-purchase
    categories derived before it), the re-rank and the popularity fill apply
    as in :func:`generate_recommendations` (:meth:`_Layers.serve`).
    """

    layers: _Layers
    recent: sp.csr_array
    ranking: np.ndarray
    width: int

    @classmethod
    def of(cls, window: _Window, rules: BusinessRules, n: int) -> _Serving:
        train, cutoff = window.split.train, window.split.cutoff
        layers = _Layers.of(train, cutoff, None, rules)
        recent = layers.recent[window.users]
        ranking = PopularityRecommender().fit(train, cutoff).ranking(np.flatnonzero(layers.blocked))
        width = min(n * rules.overfetch + int(np.diff(recent.indptr).max(initial=0)), max(train.n_items, n))
        return cls(layers, recent, ranking, width)

    def lists(self, items: np.ndarray, scores: np.ndarray, n: int, rules: BusinessRules, batch_size: int) -> np.ndarray:
        """The served top ``n`` of every window user from ``(n_users, >= width)`` candidates, best first."""
        listed = np.full((len(items), n), -1, dtype=np.int64)
        for first in range(0, len(items), batch_size):  # batches of users, each fully vectorized
            part = slice(first, first + batch_size)
            listed[part], _, _ = self.layers.serve(items[part], scores[part], n, rules, self.recent[part], self.ranking)
        return listed


def _select(
    window: _Window, config: dict[str, Any], k: int, batch_size: int, rules: BusinessRules
) -> tuple[pd.DataFrame, dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """Grid search on the validation window, decided on the lists as served.

    The trials are every model's ``params``, then the grid points in file
    order, at most ``[evaluation] max_search_trials`` in all: a count, never
    a clock, so every machine tries the same trials. Each trial ranks items
    for the validation users; its lists then pass the serving layers known at
    the cutoff (:class:`_Serving`). ``ndcg`` and ``ndcg_new_items`` score
    the lists as trained, ``ndcg_served`` the served lists.

    Returns the trials (one row per fitted parameter set), the chosen
    parameters of each model (the best served NDCG@k; the first trial on
    ties or without validation users) and the chosen models' per-user served
    NDCG@k, which the champion gate compares.
    """
    planned = search_trials(config)
    limit = max(int(config["evaluation"].get("max_search_trials", len(planned))), len(config["models"]))
    if len(planned) > limit:
        logger.warning("max_search_trials %d: the last %d grid points are not tried", limit, len(planned) - limit)
    serving = _Serving.of(window, rules, k)
    trials: list[dict[str, Any]] = []
    chosen: dict[str, tuple[int, dict[str, Any], np.ndarray, float]] = {}  # name -> trial, params, per-user, mean
    for trial, (name, params) in enumerate(planned[:limit]):  # a few dozen fits at most
        model = build_model(name, params, config)
        fit_started = time.perf_counter()
        ndcg = ndcg_new = ndcg_served = float("nan")
        per_user_served = np.zeros(0)
        if len(window.users):
            items, scores = window.candidates(model, max(window.wide, serving.width), batch_size)
            recommended = items[:, : window.wide]
            ndcg = float(per_user_metrics(recommended[:, :k], window.truth, k)["ndcg"].mean())
            new = window.has_new
            if new.any():
                ndcg_new = evaluate(
                    _without_items(recommended[new], window.prior[new], k), window.truth_new[new], (k,)
                )[("ndcg", k)]
            per_user_served = per_user_metrics(serving.lists(items, scores, k, rules, batch_size), window.truth, k)[
                "ndcg"
            ]
            ndcg_served = float(per_user_served.mean())
        trials.append(
            dict(
                model_name=name,
                trial=trial,
                params=json.dumps(params, sort_keys=True),
                fit_seconds=round(time.perf_counter() - fit_started, 3),
                ndcg=ndcg,
                ndcg_new_items=ndcg_new,
                ndcg_served=ndcg_served,
            )
        )
        if name not in chosen or ndcg_served > chosen[name][3]:  # NaN (no validation users) never replaces
            chosen[name] = (trial, params, per_user_served, ndcg_served)
        logger.info(
            "validation %s %s: NDCG@%d %.4f as trained, %.4f served, new items %.4f",
            name,
            params,
            k,
            ndcg,
            ndcg_served,
            ndcg_new,
        )
    frame = pd.DataFrame(
        trials, columns=["model_name", "trial", "params", "fit_seconds", "ndcg", "ndcg_new_items", "ndcg_served"]
    )
    frame["is_selected"] = frame["trial"].isin([trial for trial, *_ in chosen.values()])
    return frame, {name: best[1] for name, best in chosen.items()}, {name: best[2] for name, best in chosen.items()}


def _item_categories(train: Interactions) -> np.ndarray:
    """Category code per train item (``-1`` unknown), for diversity."""
    if train.items is None:
        return np.full(train.n_items, -1, dtype=np.int64)
    categories = train.items["category"].replace("", np.nan)
    return pd.factorize(categories, sort=True)[0].astype(np.int64)


def _item_popularity(train: Interactions) -> np.ndarray:
    """Share of the train users who interacted with each item, for novelty."""
    pairs = train.to_csr({name: 1.0 for name in EVENT_WEIGHTS})
    users_per_item = np.bincount(pairs.indices, minlength=train.n_items)
    return users_per_item / max(train.n_users, 1)


def train_and_evaluate(
    conn: Any,
    run_id: str,
    data_interval_start: Timestamp,
    data_interval_end: Timestamp,
    config: dict[str, Any] | None = None,
    history_days: float | None = None,
    batch_size: int = 5_000,
    rules: BusinessRules | None = None,
) -> dict[str, Any]:
    """Choose hyperparameters and the champion on a validation window, report every model on the test window.

    With ``end = data_interval_end``, ``test_cutoff = end - test_days`` and
    ``validation_cutoff = test_cutoff - validation_days`` (both from the
    ``evaluation`` section of the configuration, :data:`MODEL_CONFIG`):

    1. **Selection.** Every model of the configuration is fitted on the events
       before the validation cutoff with its ``params``, then the points of
       its ``search`` grid up to ``max_search_trials``; each ranks items for
       the users with a purchase in ``[validation_cutoff, test_cutoff)`` (at most
       ``[evaluation] max_users`` of them: a sample with the fixed seed
       :data:`EVALUATION_SEED` when there are more; the test window likewise), and
       the lists pass the serving layers (business rules, re-rank, fill).
       Every trial goes to ``ml.model_search``; the best parameters per model
       and the champion (:func:`champion_gate`) are chosen by NDCG@k of the
       lists as served, so the champion is the model whose served lists are
       best (see :func:`_select`).
    2. **Report.** The chosen model of every name is refitted on the events
       before the test cutoff and scored on the purchases in ``[test_cutoff,
       end)``: ``ml.model_evaluations`` gets precision, recall, NDCG, hit
       rate, F1 and MAP at 5/10/20 for segment ``all`` and per ``user_type``,
       ``lifecycle_stage`` and ``spending_power`` segment, plus catalogue
       ``coverage``, ``diversity`` and ``novelty`` for ``all``, in two
       variants: ``all_items``, and ``new_items`` (what each user bought before
       the cutoff leaves the ranking, the rest moves up, and the truth; users
       left without truth are not evaluated). Models that score pairs add
       ``roc_auc`` (k 0: over their candidate pairs), ``svd`` adds ``rmse``
       and ``mae`` (k 0) on the ratings given in the test window. The
       champion is also scored after the business rules (variant
       ``business_rules``) and after the rules and the diversity re-rank
       (``reranked``), with ``category_coverage`` for those and its
       ``all_items`` lists, so the accuracy cost of the layers is queryable.
    3. **Cold start.** :func:`recsys.usecases.cold_start.evaluate_new_users` scores
       global popularity, segment popularity and the demographic model on the
       users who signed up in the test window (segment ``new_users``).

    ``ml.runs`` gets status ``evaluated``, the champion, its parameters and
    the gate's reason.

    Parameters
    ----------
    conn : psycopg2 connection or str
        Warehouse connection or DSN. The work is one transaction, committed here.
    run_id : str
        Key of the run; a re-run replaces its rows.
    data_interval_start, data_interval_end : datetime
        The DAG run's data interval; the end is "now".
    config : dict, optional
        Model configuration; default :func:`load_model_config`.
    history_days : float, optional
        Only read events from ``data_interval_end - history_days`` on; default all history.
    batch_size : int, default 5000
        Users per recommend call.
    rules : BusinessRules, optional
        The layers the champion is also evaluated after (variants ``business_rules``
        and ``reranked``, see :func:`_reranked_rows`); default :func:`recsys.serving.rules.load_business_rules`.

    Returns
    -------
    dict
        JSON-safe summary for XCom: ``run_id``, ``champion_model``,
        ``champion_params``, ``champion_reason``, cutoffs, user counts,
        ``metrics`` and ``metrics_new_items`` (test NDCG@k per model) and
        ``fit_seconds`` (test-window fit per model).
    """
    started_at = datetime.now(UTC)
    config = load_model_config() if config is None else config
    rules = load_business_rules() if rules is None else rules
    evaluation = config["evaluation"]
    k = int(evaluation.get("k", 10))
    ks = tuple(sorted({*EVAL_KS, k}))
    validation_cutoff, test_cutoff, end = windows.cutoffs(config, data_interval_end)
    gate = config.get("champion", {})
    with frames.connection(conn) as connection:
        with runs.run_step(connection, run_id, started_at):
            runs.ensure_schema(connection)
            start = None if history_days is None else end - history_days * SECONDS_PER_DAY
            data = load_interactions(connection, start, end, side_data=True)

            max_users = int(evaluation.get("max_users", 50_000))
            validation = _Window.of(data.before(test_cutoff), validation_cutoff, test_cutoff, ks, max_users)
            trials, chosen, validation_ndcg = _select(validation, config, k, batch_size, rules)
            champion, reason = champion_gate(
                validation_ndcg, gate.get("baselines", list(BASELINES)), k, float(gate.get("min_z", 1.645))
            )
            logger.info("run %s champion: %s", run_id, reason)

            test = _Window.of(data, test_cutoff, end, ks, max_users)
            train = test.split.train
            prior_purchases = np.diff(test.prior.indptr)
            segmentations = _segmentations(connection, train.user_ids[test.users], prior_purchases)
            new = test.has_new
            new_segmentations = [(codes[new], names) for codes, names in segmentations]
            categories, popularity = _item_categories(train), _item_popularity(train)
            rows: list[dict[str, Any]] = []
            summary: dict[str, float | None] = {}
            summary_new: dict[str, float | None] = {}
            fit_seconds: dict[str, float] = {}
            for name, params in chosen.items() if len(test.users) else []:  # a handful of models
                model = build_model(name, params, config)
                fit_started = time.perf_counter()
                recommended = test.recommend(model, batch_size)
                fit_seconds[name] = round(time.perf_counter() - fit_started, 3)
                model_rows, scores = _evaluation_rows(
                    name,
                    EVAL_VARIANT,
                    recommended[:, : max(ks)],
                    test.truth,
                    ks,
                    segmentations,
                    categories,
                    popularity,
                    train.n_users,
                    min_segment_users(config),
                )
                rows += model_rows
                summary[name] = _json_float(scores[("ndcg", k)])
                if new.any():
                    new_rows, new_scores = _evaluation_rows(
                        name,
                        NEW_ITEMS_VARIANT,
                        _without_items(recommended[new], test.prior[new], max(ks)),
                        test.truth_new[new],
                        ks,
                        new_segmentations,
                        categories,
                        popularity,
                        train.n_users,
                        min_segment_users(config),
                    )
                    rows += new_rows
                    summary_new[name] = _json_float(new_scores[("ndcg", k)])
                rows += _pair_rows(model, test)
                if name == champion:
                    rows += _reranked_rows(model, test, rules, ks, segmentations, popularity, config, batch_size)
                logger.info(
                    "%s (%.1f s): test NDCG@%d %s, new items %s",
                    name,
                    fit_seconds[name],
                    k,
                    summary[name],
                    summary_new.get(name),
                )
            if not len(test.users):
                logger.warning("run %s: no purchases in the test window, nothing to evaluate", run_id)
            cold_rows, cold_summary = cold_start.evaluate_new_users(connection, data, test_cutoff, end, config, ks, k)
            rows += cold_rows

            evaluations = pd.DataFrame(
                rows, columns=["model_name", "variant", "segment", "metric", "k", "metric_value"]
            )
            evaluations.insert(0, "run_id", run_id)
            trials.insert(0, "run_id", run_id)
            runs.delete_run(connection, ["ml.model_evaluations", "ml.model_search"], run_id)
            written = frames.copy_frame(connection, "ml.model_evaluations", evaluations)
            frames.copy_frame(connection, "ml.model_search", trials)
            champion_params = chosen.get(champion, config["models"].get(champion, {}).get("params", {}))
            runs.upsert_run(
                connection,
                run_id,
                data_interval_start=as_datetime(data_interval_start),
                data_interval_end=as_datetime(end),
                validation_cutoff_at=as_datetime(validation_cutoff),
                eval_cutoff_at=as_datetime(test_cutoff),
                data_cutoff_at=as_datetime(end),
                started_at=started_at,
                finished_at=datetime.now(UTC),
                status="evaluated",
                champion_model=champion,
                champion_params=json.dumps(champion_params, sort_keys=True),
                champion_reason=reason,
            )
    return {
        "run_id": run_id,
        "champion_model": champion,
        "champion_params": champion_params,
        "champion_reason": reason,
        "validation_cutoff_at": as_datetime(validation_cutoff).isoformat(),
        "eval_cutoff_at": as_datetime(test_cutoff).isoformat(),
        "n_train_events": int(train.n_events),
        "n_validation_users": int(len(validation.users)),
        "n_test_users": int(len(test.users)),
        "search_trials": int(len(trials)),
        "evaluation_rows": written,
        "metrics": summary,
        "metrics_new_items": summary_new,
        "fit_seconds": fit_seconds,
        "cold_start": cold_summary,
    }


#: evaluation variant of the champion after the business rules only, and after rules and diversity re-ranking
RULES_VARIANT = "business_rules"
RERANKED_VARIANT = "reranked"


def _reranked_rows(
    model: Recommender,
    window: _Window,
    rules: BusinessRules,
    ks: tuple[int, ...],
    segmentations: list[tuple[np.ndarray, list[str]]],
    item_popularity: np.ndarray,
    config: dict[str, Any],
    batch_size: int,
) -> list[dict[str, Any]]:
    """The champion's test-window metrics after the layers every published list passes through.

    ``model`` is fitted before the cutoff. It ranks ``overfetch * max(ks)``
    items (plus room for the user's recent purchases); the business rules
    known at the cutoff apply (deny lists, recent purchases before the cutoff
    outside repeat-purchase categories derived before the cutoff, brand cap;
    stock is today's, so not used), then the diversity re-rank, then the
    popularity fill of lists cut short (:class:`_Serving`). Variant
    :data:`RULES_VARIANT` is the rules alone, :data:`RERANKED_VARIANT` rules and
    re-rank (what is served); both, and the champion's ``all_items`` variant, get
    ``category_coverage`` (distinct top-level categories per list).
    """
    train = window.split.train
    codes = _item_categories(train)
    top = max(ks)
    serving = _Serving.of(window, rules, top)
    candidates, scores = _recommend_in_batches(model, window.users, serving.width, batch_size)
    before = candidates[:, :top]
    variants = {
        variant: serving.lists(candidates, scores, top, replace(rules, diversity_strength=strength), batch_size)
        for variant, strength in ((RULES_VARIANT, 0.0), (RERANKED_VARIANT, rules.diversity_strength))
    }
    rows: list[dict[str, Any]] = []
    for variant, listed in variants.items():  # two variants
        variant_rows, scores = _evaluation_rows(
            model.name,
            variant,
            listed,
            window.truth,
            ks,
            segmentations,
            codes,
            item_popularity,
            train.n_users,
            min_segment_users(config),
        )
        rows += variant_rows
        logger.info("%s %s: test NDCG@%d %.4f", model.name, variant, top, scores[("ndcg", top)])
    for variant, listed in {EVAL_VARIANT: before, **variants}.items():  # three variants
        rows += [
            dict(
                model_name=model.name,
                variant=variant,
                segment="all",
                metric="category_coverage",
                k=cut,
                metric_value=category_coverage(listed, codes, cut),
            )
            for cut in ks
        ]
    return [row for row in rows if math.isfinite(row["metric_value"])]


def diversity_sweep(
    conn: Any, run_id: str, strengths: Sequence[float], k: int = 10, batch_size: int = 5_000
) -> pd.DataFrame:
    """The champion's test-week metrics at ``k`` after the rules, for each re-rank strength.

    Refits the run's champion (its chosen parameters) before the run's test
    cutoff and scores the same lists as :func:`_reranked_rows`, once per
    strength: the accuracy cost of diversity, to choose ``[diversity] strength``.

    Returns
    -------
    pandas.DataFrame
        One row per strength; columns the metrics of segment ``all``.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            "select champion_model, champion_params, data_cutoff_at, eval_cutoff_at from ml.runs where run_id = %s",
            (run_id,),
        )
        row = cursor.fetchone()
    if row is None or row[3] is None:
        raise LookupError(f"run {run_id!r} has no evaluation in ml.runs: run train_and_evaluate first")
    champion, params, end, cutoff = row
    config, rules = load_model_config(), load_business_rules()
    ks = tuple(sorted({*EVAL_KS, k}))
    data = load_interactions(conn, None, to_epoch_seconds(end), side_data=True)
    window = _Window.of(data, to_epoch_seconds(cutoff), to_epoch_seconds(end), ks)
    model = build_model(champion, json.loads(params or "{}"), config).fit(window.split.train, window.split.cutoff)
    popularity = _item_popularity(window.split.train)
    table = {}
    for strength in strengths:  # a handful of settings
        rows = pd.DataFrame(
            _reranked_rows(
                model, window, replace(rules, diversity_strength=strength), ks, [], popularity, config, batch_size
            )
        )
        chosen = rows[(rows["variant"] == RERANKED_VARIANT) & (rows["segment"] == "all") & (rows["k"] == k)]
        table[strength] = chosen.set_index("metric")["metric_value"]
    result = pd.DataFrame(table).T
    result.index.name = "strength"
    logger.info("diversity sweep of %s on %d test users", champion, len(window.users))
    return result


def _pair_rows(model: Recommender, window: _Window) -> list[dict[str, Any]]:
    """Pair-level metrics: ROC-AUC of a ranker's candidate scores, RMSE/MAE of a rating model (k 0)."""
    common = dict(model_name=model.name, variant=EVAL_VARIANT, segment="all", k=0)
    values: dict[str, float] = {}
    if isinstance(model, CandidateRanker):
        rows, items, scores = model.score_candidates(window.users)
        labels = lookup(window.truth, rows, items) > 0
        values["roc_auc"] = roc_auc(scores, labels)
    if isinstance(model, SVDRecommender) and window.split.test_ratings is not None:
        ratings = window.split.test_ratings
        predicted = model.predict(ratings["user_index"].to_numpy(), ratings["item_index"].to_numpy())
        values["rmse"] = rmse(predicted, ratings["rating"].to_numpy())
        values["mae"] = mae(predicted, ratings["rating"].to_numpy())
    return [dict(common, metric=name, metric_value=value) for name, value in values.items() if math.isfinite(value)]


# --------------------------------------------------------------------------- publishing


def _champion_of(conn: Any, run_id: str) -> tuple[str, dict[str, Any] | None]:
    """The champion of a run and its parameters (``None``: the configured ``params``)."""
    with conn.cursor() as cursor:
        cursor.execute("select champion_model, champion_params from ml.runs where run_id = %s", (run_id,))
        row = cursor.fetchone()
    if row is None or row[0] is None:
        raise LookupError(f"run {run_id!r} has no champion in ml.runs: run train_and_evaluate first")
    return row[0], None if row[1] is None else json.loads(row[1])


def _concat(*parts: pd.Series | str) -> pd.Series:
    """Vectorized string concatenation of Series and constants."""
    result = None
    for part in parts:  # a few string pieces, each a whole column
        result = part if result is None else result + part
    return result


def _popular_text(model: PopularityRecommender) -> str:
    if model.window_days is None:
        return "Popular with shoppers"
    return f"Popular in the last {model.window_days:g} days"


@dataclass
class _Layers:
    """Per-item rule inputs of one run (see :mod:`recsys.serving.rules`)."""

    blocked: np.ndarray
    brands: np.ndarray
    categories: np.ndarray
    repeat_item: np.ndarray
    recent: sp.csr_array
    brand_codes: np.ndarray
    category_codes: np.ndarray

    @classmethod
    def of(cls, data: Interactions, end: float, in_stock: np.ndarray | None, rules: BusinessRules) -> _Layers:
        """The rule inputs at ``end``; ``in_stock`` None: every item (evaluation, where stock is today's)."""
        in_stock = np.ones(data.n_items, dtype=bool) if in_stock is None else in_stock
        categories, brands = rules_module.item_attributes(data)
        repeat_item = np.isin(categories, rules_module.repeat_purchase_categories(data, end, rules))
        blocked = rules_module.blocked_items(data.item_ids, categories, brands, in_stock, rules)
        recent = rules_module.recent_purchases(data, end, rules, repeat_item)
        logger.info(
            "business rules %s: %d of %d items blocked, %d recent purchases excluded",
            rules.version,
            int(blocked.sum()),
            len(blocked),
            recent.nnz,
        )
        codes = rules_module.label_codes(brands), rules_module.label_codes(categories)
        return cls(blocked, brands, categories, repeat_item, recent, *codes)

    def serve(
        self,
        items: np.ndarray,
        scores: np.ndarray,
        n: int,
        rules: BusinessRules,
        exclude: sp.csr_array | None,
        ranking: np.ndarray,
        extra: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The list a shopper sees, from a model's overfetched candidates: the one definition of serving.

        :func:`recsys.serving.rules.apply_layers` (rules, re-rank, cut to ``n``), then
        a list the rules cut short is filled from ``ranking`` (popularity,
        rules-filtered, no brand cap), then scores made non-increasing.
        :func:`generate_recommendations` publishes these lists and the
        champion gate (:func:`_select`) scores them, so the champion is
        chosen on what is served.
        """
        items, scores, extra = rules_module.apply_layers(
            items,
            scores,
            n,
            rules,
            self.blocked,
            self.brand_codes,
            self.category_codes,
            exclude,
            extra=extra,
        )
        items, scores = fill_from_ranking(items, scores, ranking, len(self.blocked), exclude)
        return items, rules_module.monotone_scores(scores), extra


def _cold_start_lists(
    users: pd.DataFrame,
    data: Interactions,
    popularity: PopularityRecommender,
    blocked: np.ndarray,
    n_cold_start: int,
    rules: BusinessRules,
    layers: _Layers,
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
    segment_labels = _concat(users["age_band"].fillna("unknown"), "|", users["gender"].fillna("unknown")).to_numpy()
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
    cold_items, cold_scores, _ = rules_module.apply_layers(
        items, scores, n_cold_start, rules, layers.blocked, layers.brands, layers.categories
    )
    return group_of_user, keys, cold_items, cold_scores


def _reason_data(
    conn: Any,
    data: Interactions,
    end: float,
    knn: ItemKNNRecommender,
    layers: _Layers,
    rules: BusinessRules,
    item_names: np.ndarray,
    consent: np.ndarray,
    group_of_user: np.ndarray,
    segment_items: np.ndarray,
    segment_keys: np.ndarray,
    popularity: PopularityRecommender,
) -> reasons_module.ReasonData:
    """What the run's reasons are grounded in; opted-out users' events are not read (``consent`` 0)."""
    until = np.nextafter(end, np.inf)
    only_consenting = sp.diags_array(consent.astype(np.float32))

    def pattern(event: str) -> sp.csr_array:
        return sp.csr_array(only_consenting @ sp.csr_array(data.to_csr({event: 1.0}, end=until) > 0, dtype=np.float32))

    category_names = np.unique(layers.categories[layers.categories != ""]).astype(object)
    tags = pd.DataFrame(columns=["user_id", "tag", "tag_rank"])
    if frames.table_exists(conn, "analytics.user_interest_tags"):
        tags = frames.read_frame(
            conn,
            "select user_id, tag, tag_rank from analytics.user_interest_tags"
            f" where tag like 'category:%' and tag_rank <= {int(rules.interest_tags)}",
        )
    rows, cols = np.nonzero(segment_items >= 0)
    return reasons_module.ReasonData(
        item_names=item_names.astype(object),
        item_categories=layers.categories,
        repeat_item=layers.repeat_item,
        purchases=pattern("purchase"),
        strength=data.strongest_events(),
        knn=knn,
        min_similarity=rules.min_similarity,
        viewed=pattern("view"),
        also_bought=reasons_module.also_bought_matrix(data, until, rules.min_also_bought_users),
        interests=reasons_module.interest_matrix(tags, data.user_ids, category_names, rules.interest_tags),
        category_code=pd.Index(category_names).get_indexer(layers.categories).astype(np.int64),
        group_of_user=np.where(consent > 0, group_of_user, -1),
        segment_items=sp.csr_array(
            (np.ones(len(rows), dtype=np.float32), (rows, segment_items[rows, cols])),
            shape=(segment_items.shape[0], data.n_items),
        ),
        segment_texts=reasons_module.segment_text(segment_keys),
        popular_text=_popular_text(popularity),
    )


def generate_recommendations(
    conn: Any,
    run_id: str,
    data_interval_end: Timestamp,
    n: int = 20,
    batch_size: int = 10_000,
    n_similar: int = 20,
    n_cold_start: int = 20,
    model_name: str | None = None,
    history_days: float | None = None,
    config: dict[str, Any] | None = None,
    rules: BusinessRules | None = None,
) -> dict[str, Any]:
    """Refit the champion on all data up to ``data_interval_end`` and write every list of the run.

    Writes, replacing earlier rows of ``run_id``:

    * ``ml.recommendations``: top ``n`` in-stock items for every user of
      ``analytics.dim_users``. Users with history and
      ``is_personalization_allowed`` get the list of the champion (any model
      of :data:`ESTIMATORS`, refitted with the parameters chosen on the
      validation window); others get popularity. Every list passes the
      layers of :mod:`recsys.serving.rules` (the business rules file): the model ranks
      ``overfetch * n`` items, blocked items (out of stock, deny lists), the
      user's purchases of the last ``recent_purchase_days`` outside
      repeat-purchase categories and items past ``max_per_brand`` leave it,
      the MMR diversity re-rank orders the rest, the top ``n`` stay (scores
      made non-increasing), and a list cut short is filled from the
      rules-filtered popularity ranking. Rows the champion ranked carry its
      name as ``model_name``, filled rows ``popularity`` (score 0, or
      popularity scores for a list of popularity only). Every row gets a
      grounded reason from :func:`recsys.serving.reasons.reasons`; a champion row
      none of them explains gets the champion's :data:`REASON_CODES` code and
      :data:`FALLBACK_TEXTS` text.
    * ``ml.similar_items``: top ``n_similar`` neighbours of every item from
      item-KNN (always fitted, whatever the champion), after the blocked
      items and the brand cap (no re-rank).
    * ``ml.cold_start_recommendations``: top ``n_cold_start`` items for
      ``segment_key`` ``all`` (popularity) and for every ``age_band|gender``
      of ``dim_users`` (missing values read ``unknown``) with at least
      ``min_segment_users`` users with events (k-anonymity):
      the list of the better segment-aware cold-start model of the run's
      ``new_users`` evaluation (:func:`recsys.usecases.cold_start.serving_lists`) where
      it has the segment, else the segment's popularity; filled from global
      popularity (score 0) where a segment has too few items, after the rules
      and the re-rank. Users without events who allow personalization get
      that model's list (``reason_code`` ``new_user_segment``, "Popular with
      new shoppers like you (<age band>, <region>)") when it beat global
      popularity on the new users; otherwise global popularity.
    * ``ml.runs``: status ``recommended``, ``finished_at``, ``business_rules_version`` and the run's
      ``repeat_purchase_categories`` (``|``-separated; serving keeps a just-bought item of those).

    Parameters
    ----------
    conn : psycopg2 connection or str
        Warehouse connection or DSN. The work is one transaction, committed here.
    run_id : str
        The run evaluated by :func:`train_and_evaluate`.
    data_interval_end : datetime
        "Now": events up to here are used; stamped as ``generated_at``.
    n : int, default 20
        Items per user.
    batch_size : int, default 10000
        Users per batch (bounds memory).
    n_similar, n_cold_start : int, default 20
        List lengths of ``ml.similar_items`` and ``ml.cold_start_recommendations``.
    model_name : str, optional
        Override the champion recorded in ``ml.runs`` (with its configured ``params``).
    history_days : float, optional
        Only use events from ``data_interval_end - history_days`` on.
    config : dict, optional
        Model configuration; default :func:`load_model_config`.
    rules : BusinessRules, optional
        Default :func:`recsys.serving.rules.load_business_rules`.

    Returns
    -------
    dict
        Row and user counts for XCom.
    """
    started_at = datetime.now(UTC)
    end = to_epoch_seconds(data_interval_end)
    generated_at = as_datetime(end)
    with frames.connection(conn) as connection:
        with runs.run_step(connection, run_id, started_at):
            runs.ensure_schema(connection)
            config = load_model_config() if config is None else config
            rules = load_business_rules() if rules is None else rules
            champion, params = (model_name, None) if model_name else _champion_of(connection, run_id)
            if champion not in ESTIMATORS:
                raise ValueError(f"unknown champion model {champion!r}")
            if params is None:
                params = config["models"].get(champion, {}).get("params", {})
            users = frames.read_frame(
                connection,
                "select user_id, age_band, gender, is_personalization_allowed from analytics.dim_users",
            ).drop_duplicates("user_id", ignore_index=True)
            catalogue = frames.read_frame(
                connection, "select item_id, item_name, category, is_in_stock from analytics.dim_items"
            ).drop_duplicates("item_id", ignore_index=True)
            start = None if history_days is None else end - history_days * SECONDS_PER_DAY
            data = load_interactions(
                connection,
                start,
                end,
                user_ids=users["user_id"].to_numpy(),
                item_ids=catalogue["item_id"].to_numpy(),
                side_data=True,
            )

            knn_params = config["models"].get(ItemKNNRecommender.name, {}).get("params", {})
            if champion == ItemKNNRecommender.name:
                knn_params = params
            knn = build_model(ItemKNNRecommender.name, knn_params, config).fit(data, end)  # similar items, always
            if champion == ItemKNNRecommender.name:
                model: Recommender = knn
            else:
                model = build_model(champion, params, config).fit(data, end)
            popularity = model if isinstance(model, PopularityRecommender) else knn.fallback_
            item_names = data.item_ids.copy()
            item_names[: len(catalogue)] = catalogue["item_name"].fillna(catalogue["item_id"]).to_numpy()
            in_stock = np.zeros(data.n_items, dtype=bool)
            in_stock[: len(catalogue)] = catalogue["is_in_stock"].to_numpy() == "t"
            layers = _Layers.of(data, end, in_stock, rules)
            blocked = np.flatnonzero(layers.blocked)

            # users of dim_users are the first rows of the encoding
            targets = np.arange(len(users), dtype=np.int64)
            allowed = users["is_personalization_allowed"].fillna("t").to_numpy() != "f"
            has_history = np.diff(knn.user_items_.indptr)[: len(users)] > 0
            personalized = allowed & has_history & (champion != PopularityRecommender.name)
            # opted-out users' purchases are not read, not even to filter their list
            consent = np.zeros(data.n_users, dtype=np.float32)
            consent[: len(users)] = allowed
            recent = sp.csr_array(sp.diags_array(consent) @ layers.recent)
            recent.eliminate_zeros()

            tables = ["ml.recommendations", "ml.similar_items", "ml.cold_start_recommendations"]
            runs.delete_run(connection, tables, run_id)
            wide = n * rules.overfetch
            cold_users = np.flatnonzero(allowed & ~has_history)
            cold = cold_start.serving_lists(
                connection, run_id, data, end, cold_users, config, wide, n_cold_start * rules.overfetch, blocked
            )
            cold_row = np.full(len(users), -1, dtype=np.int64)  # row of cold.items per user, -1: not served
            cold_row[cold_users[cold.served]] = np.flatnonzero(cold.served)
            group_of_user, keys, cold_items, cold_scores = _cold_start_lists(
                users, data, popularity, blocked, n_cold_start, rules, layers, config, cold.table, has_history
            )
            reason_data = _reason_data(
                connection,
                data,
                end,
                knn,
                layers,
                rules,
                item_names,
                consent,
                group_of_user,
                cold_items[1:],
                keys[1:],
                popularity,
            )
            popular_items, popular_scores = popularity.recommend(
                np.zeros(1, dtype=np.int64), n=wide, filter_items=blocked
            )
            ranking = popularity.ranking(blocked)
            n_recommendations = 0
            for first in range(0, len(targets), batch_size):  # batches of users, each fully vectorized
                batch = targets[first : first + batch_size]
                items = np.tile(popular_items, (len(batch), 1))
                scores = np.tile(popular_scores, (len(batch), 1))
                from_model = np.zeros(items.shape, dtype=bool)
                mine = np.flatnonzero(personalized[batch])
                if len(mine):
                    own_items, own_scores = model.recommend(batch[mine], n=wide, filter_items=blocked)
                    # every model fills with popularity at score 0 except ALS, which fills cold users only
                    own = (own_items >= 0) if champion == ALSRecommender.name else own_scores > 0
                    only_fill = ~own.any(axis=1, keepdims=True)  # no evidence at all: a pure popularity list
                    items[mine] = own_items
                    from_model[mine] = own
                    scores[mine] = np.where(only_fill, popularity.item_scores_[np.maximum(own_items, 0)], own_scores)
                new = np.flatnonzero(cold_row[batch] >= 0)  # no events: the cold-start list of the segment
                items[new], scores[new] = cold.items[cold_row[batch[new]]], cold.scores[cold_row[batch[new]]]
                source = np.where(from_model, _FROM_MODEL, _FROM_FILL).astype(np.int8)
                source[new] = np.where(items[new] >= 0, _FROM_COLD_START, _FROM_FILL)
                items, scores, source = layers.serve(items, scores, n, rules, recent[batch], ranking, extra=source)
                from_model = source == _FROM_MODEL
                codes, texts = reasons_module.reasons(
                    reason_data,
                    batch,
                    items,
                    from_model,
                    REASON_CODES.get(champion, "popular"),
                    np.full(items.shape, FALLBACK_TEXTS.get(champion, reason_data.popular_text), dtype=object),
                )
                rows, ranks = np.nonzero(items >= 0)
                is_model, is_cold = from_model[rows, ranks], source[rows, ranks] == _FROM_COLD_START
                # no cold user served at all (every user has events, as in an invoice export): no texts to index
                cold_text = cold.reason_text[np.maximum(cold_row[batch[rows]], 0)] if len(cold.reason_text) else ""
                frame = pd.DataFrame(
                    {
                        "run_id": run_id,
                        "user_id": users["user_id"].to_numpy()[batch[rows]],
                        "item_rank": ranks + 1,
                        "item_id": data.item_ids[items[rows, ranks]],
                        "score": scores[rows, ranks],
                        "model_name": np.where(
                            is_model, champion, np.where(is_cold, cold.model_name, PopularityRecommender.name)
                        ),
                        "reason_code": np.where(is_cold, cold_start.REASON_CODE, codes[rows, ranks]),
                        "reason_text": np.where(is_cold, cold_text, texts[rows, ranks]),
                        "generated_at": generated_at.isoformat(),
                    }
                )
                n_recommendations += frames.copy_frame(connection, "ml.recommendations", frame)

            similar, similar_scores = knn.similar_items(n_similar * rules.overfetch, filter_items=blocked)
            similar, similar_scores, _ = rules_module.apply_layers(
                similar,
                similar_scores,
                n_similar,
                rules,
                layers.blocked,
                layers.brands,
                layers.categories,
                diversify=False,
            )
            item_rows, item_ranks = np.nonzero(similar >= 0)
            n_similar_rows = frames.copy_frame(
                connection,
                "ml.similar_items",
                pd.DataFrame(
                    {
                        "run_id": run_id,
                        "item_id": data.item_ids[item_rows],
                        "item_rank": item_ranks + 1,
                        "similar_item_id": data.item_ids[similar[item_rows, item_ranks]],
                        "score": similar_scores[item_rows, item_ranks],
                    }
                ),
            )

            seg_rows, seg_ranks = np.nonzero(cold_items >= 0)
            n_cold_rows = frames.copy_frame(
                connection,
                "ml.cold_start_recommendations",
                pd.DataFrame(
                    {
                        "run_id": run_id,
                        "segment_key": keys[seg_rows],
                        "item_rank": seg_ranks + 1,
                        "item_id": data.item_ids[cold_items[seg_rows, seg_ranks]],
                        "score": cold_scores[seg_rows, seg_ranks],
                    }
                ),
            )
            runs.upsert_run(
                connection,
                run_id,
                data_interval_end=generated_at,
                data_cutoff_at=generated_at,
                finished_at=datetime.now(UTC),
                status="recommended",
                champion_model=champion,
                business_rules_version=rules.version,
                repeat_purchase_categories="|".join(sorted(set(layers.categories[layers.repeat_item]))),
            )
    result = {
        "run_id": run_id,
        "champion_model": champion,
        "users": int(len(users)),
        "personalized_users": int(personalized.sum()),
        "recommendations": n_recommendations,
        "similar_items": n_similar_rows,
        "cold_start_recommendations": n_cold_rows,
        "cold_start_segments": int(len(keys)),
        "cold_start_model": cold.model_name,
        "cold_start_users": int(cold.served.sum()),
        "in_stock_items": int(in_stock.sum()),
        "business_rules_version": rules.version,
    }
    logger.info("run %s recommendations: %s", run_id, result)
    return result
