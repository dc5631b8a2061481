"""Choosing what to publish: the search on the validation window, scored on the lists as served; the champion gate."""

from __future__ import annotations

import json
import logging
import math
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.evaluation.metrics import (
    category_coverage,
    evaluate,
    per_user_metrics,
)
from recsys.evaluation.offline import (
    EVAL_KS,
    EVAL_VARIANT,
    EvaluationWindow,
    evaluation_rows,
    item_categories,
    item_popularity,
    recommend_in_batches,
    without_items,
)
from recsys.features.interactions import (
    load_interactions,
    to_epoch_seconds,
)
from recsys.models.base import Recommender
from recsys.models.popularity import PopularityRecommender, RepeatPurchaseRecommender
from recsys.models.ranker import CandidateRanker
from recsys.models.registry import (
    ESTIMATORS,
    build_model,
    load_model_config,
    min_segment_users,
    search_trials,
)
from recsys.models.shared_fits import frames_for, shared_fits
from recsys.models.workers import iterate_in_workers
from recsys.serving import placements
from recsys.serving.rules import BusinessRules, ServingLayers, load_business_rules

logger = logging.getLogger(__name__)
T = TypeVar("T")


#: the champion must beat these (``[champion] baselines`` of the configuration)
BASELINES: tuple[str, ...] = (PopularityRecommender.name, RepeatPurchaseRecommender.name)


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


@dataclass
class ServedLists:
    """The serving layers as known at a window's cutoff, to score lists as a shopper would have seen them.

    Stock is today's, so every item counts as in stock; deny lists, the
    brand cap, recent purchases before the cutoff (outside repeat-purchase
    categories derived before it), the re-rank and the popularity fill apply
    as in :func:`generate_recommendations` (:meth:`ServingLayers.serve`).
    """

    layers: ServingLayers
    recent: sp.csr_array
    ranking: np.ndarray
    width: int
    #: every purchase of the window's users before the cutoff (the placements' restriction)
    bought: sp.csr_array
    #: candidates the placements need: ``width``, or room for the most purchases of a user if more
    shelf_width: int

    @classmethod
    def of(cls, window: EvaluationWindow, rules: BusinessRules, n: int) -> ServedLists:
        train, cutoff = window.split.train, window.split.cutoff
        layers = ServingLayers.of(train, cutoff, None, rules)
        recent = layers.recent[window.users]
        ranking = PopularityRecommender().fit(train, cutoff).ranking(np.flatnonzero(layers.blocked))
        width = min(n * rules.overfetch + int(np.diff(recent.indptr).max(initial=0)), max(train.n_items, n))
        shelf = min(n * rules.overfetch + int(np.diff(window.prior.indptr).max(initial=0)), max(train.n_items, n))
        return cls(layers, recent, ranking, width, window.prior, max(width, shelf))

    def lists(
        self,
        items: np.ndarray,
        scores: np.ndarray,
        n: int,
        rules: BusinessRules,
        batch_size: int,
        placement: str = placements.FOR_YOU,
        rows: np.ndarray | None = None,
    ) -> np.ndarray:
        """The served ``placement`` top ``n`` of the window users ``rows`` (default all), best first.

        ``items`` and ``scores`` are ``(n_users, >= shelf_width)`` candidates of every window user.
        """
        rows = np.arange(len(items)) if rows is None else rows
        listed = np.full((len(rows), n), -1, dtype=np.int64)
        for first in range(0, len(rows), batch_size):  # batches of users, each fully vectorized
            part = rows[first : first + batch_size]
            listed[first : first + len(part)], _, _ = placements.serve(
                self.layers,
                placement,
                items[part],
                scores[part],
                n,
                rules,
                self.recent[part],
                self.bought[part],
                self.ranking,
            )
        return listed

    def placement_ndcg(
        self,
        window: EvaluationWindow,
        items: np.ndarray,
        scores: np.ndarray,
        k: int,
        rules: BusinessRules,
        batch_size: int,
    ) -> dict[str, np.ndarray]:
        """Per-user NDCG@k of each placement other than ``for_you``, over the users with its truth."""
        result = {}
        for placement in placements.PLACEMENTS[1:]:  # discover, buy_again
            rows = np.flatnonzero(window.has[placement])
            listed = self.lists(items, scores, k, rules, batch_size, placement, rows)
            result[placement] = per_user_metrics(listed, window.truths[placement][rows], k)["ndcg"]
        return result


def select_models(
    window: EvaluationWindow, config: dict[str, Any], k: int, batch_size: int, rules: BusinessRules
) -> tuple[pd.DataFrame, dict[str, dict[str, Any]], dict[str, dict[str, np.ndarray]]]:
    """Grid search on the validation window, decided on the lists as served.

    The trials are every model's ``params``, then the grid points in file
    order, at most ``[evaluation] max_search_trials`` in all: a count, never
    a clock, so every machine tries the same trials. Each trial ranks items
    for the validation users; its lists then pass the serving layers known at
    the cutoff (:class:`ServedLists`). ``ndcg`` and ``ndcg_new_items`` score
    the lists as trained, ``ndcg_served`` the served lists.

    Returns the trials (one row per fitted parameter set), the chosen
    parameters of each model (the best served NDCG@k; the first trial on
    ties or without validation users) and the chosen models' per-user served
    NDCG@k of each placement (``{name: {placement: per-user}}``, over the users
    with that placement's truth), which the champion gate of each placement
    compares (:func:`gate_placements`).
    """
    planned = search_trials(config)
    limit = max(int(config["evaluation"].get("max_search_trials", len(planned))), len(config["models"]))
    if len(planned) > limit:
        logger.warning("max_search_trials %d: the last %d grid points are not tried", limit, len(planned) - limit)
    serving = ServedLists.of(window, rules, k)
    trial = partial(_trial, window=window, serving=serving, config=config, k=k, batch_size=batch_size, rules=rules)
    group = partial(_trial_group, trial, frames_for(len(window.users), batch_size))
    done = sorted(run_fits(group, planned[:limit]), key=lambda result: result[0]["trial"])
    trials: list[dict[str, Any]] = []
    chosen: dict[str, tuple[int, dict[str, Any], dict[str, np.ndarray], float]] = {}  # trial, params, per-user, mean
    for row, shelves in done:
        name, params, ndcg_served = row["model_name"], json.loads(row["params"]), row["ndcg_served"]
        trials.append(row)
        if name not in chosen or ndcg_served > chosen[name][3]:  # NaN (no validation users) never replaces
            chosen[name] = (row["trial"], params, shelves, ndcg_served)
        logger.info(
            "validation %s %s (%.1f s, process peak %d MB): NDCG@%d %.4f as trained, %.4f served, new items %.4f; "
            "served per placement %s",
            name,
            params,
            row["fit_seconds"],
            row["peak_mb"],
            k,
            row["ndcg"],
            ndcg_served,
            row["ndcg_new_items"],
            {
                placement: round(float(np.mean(values)), 4) if len(values) else None
                for placement, values in shelves.items()
            },
        )
    frame = pd.DataFrame(
        trials, columns=["model_name", "trial", "params", "fit_seconds", "ndcg", "ndcg_new_items", "ndcg_served"]
    )
    frame["is_selected"] = frame["trial"].isin([trial for trial, *_ in chosen.values()])
    return frame, {name: best[1] for name, best in chosen.items()}, {name: best[2] for name, best in chosen.items()}


def run_fits(
    function: Callable[[list[tuple[int, str, dict[str, Any]]]], list[T]], planned: Sequence[tuple[str, dict[str, Any]]]
) -> list[T]:
    """``function`` over groups of the fits of ``planned`` (model name, parameters; numbered in order), side by side.

    Every fit but the learned rankers' is a task of its own for the worker processes
    (:mod:`recsys.models.workers`), which start on them at once. The rankers' fits are one group, run meanwhile
    in this process: they share their candidate models' fits (:mod:`recsys.models.shared_fits`), each ranker's
    label windows go to the workers too (behind the fits already given to them), and its learner trains here.
    Returns the results of every group, the rankers' first.
    """
    numbered = [(number, name, params) for number, (name, params) in enumerate(planned)]
    rankers = [fit for fit in numbered if issubclass(ESTIMATORS[fit[1]], CandidateRanker)]
    others = iterate_in_workers(function, [[fit] for fit in numbered if fit not in rankers])  # the workers start
    return function(rankers) + [result for group in others for result in group]


def _trial_group(trial: Callable[..., T], max_frames: int, group: list[tuple[int, str, dict[str, Any]]]) -> list[T]:
    """``trial`` of every fit of ``group`` in turn, sharing the rankers' candidate fits and frames."""
    with shared_fits(max_frames):
        return [trial(number, name, params) for number, name, params in group]


def _trial(
    number: int,
    name: str,
    params: dict[str, Any],
    *,
    window: EvaluationWindow,
    serving: ServedLists,
    config: dict[str, Any],
    k: int,
    batch_size: int,
    rules: BusinessRules,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One search trial: its ``ml.model_search`` row and its per-user served NDCG@k of each placement."""
    model = build_model(name, params, config)
    fit_started = time.perf_counter()
    ndcg = ndcg_new = ndcg_served = float("nan")
    shelves = {placement: np.zeros(0) for placement in placements.PLACEMENTS}
    if len(window.users):
        items, scores = window.candidates(model, max(window.wide, serving.shelf_width), batch_size)
        recommended = items[:, : window.wide]
        ndcg = float(per_user_metrics(recommended[:, :k], window.truth, k)["ndcg"].mean())
        new = window.has_new
        if new.any():
            ndcg_new = evaluate(without_items(recommended[new], window.prior[new], k), window.truth_new[new], (k,))[
                ("ndcg", k)
            ]
        width = max(window.wide, serving.width)  # for_you: the candidates it was always served from
        listed = serving.lists(items[:, :width], scores[:, :width], k, rules, batch_size)
        per_user_served = per_user_metrics(listed, window.truth, k)["ndcg"]
        ndcg_served = float(per_user_served.mean())
        shelves = {
            placements.FOR_YOU: per_user_served,
            **serving.placement_ndcg(window, items, scores, k, rules, batch_size),
        }
    row = dict(
        model_name=name,
        trial=number,
        params=json.dumps(params, sort_keys=True),
        fit_seconds=round(time.perf_counter() - fit_started, 3),
        ndcg=ndcg,
        ndcg_new_items=ndcg_new,
        ndcg_served=ndcg_served,
        peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,  # logged, not stored
    )
    # this process's log (a worker's goes nowhere; select_models logs the same after every trial)
    logger.info("trial %d %s %s: %.1f s, process peak %d MB", number, name, params, row["fit_seconds"], row["peak_mb"])
    return row, shelves


def gate_placements(
    per_user: dict[str, dict[str, np.ndarray]], gate: dict[str, Any], k: int
) -> dict[str, tuple[str, str]]:
    """The champion of every placement: :func:`champion_gate` on its own per-user NDCG@k (its own truth).

    ``gate`` is the ``[champion]`` section (``baselines``, ``min_z``). Without truth to choose on, a placement
    keeps its first baseline: ``repeat_purchase`` for ``buy_again``, the configured first one for the others.
    """
    baselines = list(gate.get("baselines", BASELINES))
    again_first = sorted(baselines, key=lambda name: name != RepeatPurchaseRecommender.name)
    return {
        placement: champion_gate(
            {name: shelves[placement] for name, shelves in per_user.items()},
            again_first if placement == placements.BUY_AGAIN else baselines,
            k,
            float(gate.get("min_z", 1.645)),
        )
        for placement in placements.PLACEMENTS
    }


def placement_champions_json(
    champions: dict[str, tuple[str, str]], chosen: dict[str, dict[str, Any]], config: dict[str, Any]
) -> str:
    """``ml.runs.placement_champions``: per placement the champion, its chosen parameters and the gate's reason."""
    return json.dumps(
        {
            placement: {
                "model": model,
                "params": chosen.get(model, config["models"].get(model, {}).get("params", {})),
                "reason": reason,
            }
            for placement, (model, reason) in champions.items()
        },
        sort_keys=True,
    )


def placement_rows(
    name: str,
    items: np.ndarray,
    scores: np.ndarray,
    window: EvaluationWindow,
    serving: ServedLists,
    rules: BusinessRules,
    ks: tuple[int, ...],
    batch_size: int,
    categories: np.ndarray,
    popularity: np.ndarray,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """A model's test-window rows of the variants ``placement_<name>``: each placement's served lists on its truth.

    ``items`` and ``scores`` are the model's ``(n_users, >= serving.shelf_width)`` candidates; every placement is
    scored over the users with its truth (segment ``all``); ``categories`` and ``popularity`` are the train items'
    (:func:`recsys.evaluation.offline.item_categories`, :func:`~recsys.evaluation.offline.item_popularity`).
    Returns the rows and NDCG@max(ks) per placement.
    """
    rows: list[dict[str, Any]] = []
    ndcg: dict[str, float] = {}
    for placement in placements.PLACEMENTS:  # three placements
        users = np.flatnonzero(window.has[placement])
        if not len(users):
            continue
        width = serving.width if placement == placements.FOR_YOU else items.shape[1]  # for_you: as reranked_rows
        listed = serving.lists(items[:, :width], scores[:, :width], max(ks), rules, batch_size, placement, users)
        variant_rows, values = evaluation_rows(
            name,
            f"placement_{placement}",
            listed,
            window.truths[placement][users],
            ks,
            [],
            categories,
            popularity,
            window.split.train.n_users,
        )
        rows += variant_rows
        ndcg[placement] = values[("ndcg", max(ks))]
    return rows, ndcg


#: evaluation variant of the champion after the business rules only, and after rules and diversity re-ranking
RULES_VARIANT = "business_rules"


RERANKED_VARIANT = "reranked"


def reranked_rows(
    model: Recommender,
    window: EvaluationWindow,
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
    popularity fill of lists cut short (:class:`ServedLists`). Variant
    :data:`RULES_VARIANT` is the rules alone, :data:`RERANKED_VARIANT` rules and
    re-rank (what is served); both, and the champion's ``all_items`` variant, get
    ``category_coverage`` (distinct top-level categories per list).
    """
    train = window.split.train
    codes = item_categories(train)
    top = max(ks)
    serving = ServedLists.of(window, rules, top)
    candidates, scores = recommend_in_batches(model, window.users, serving.width, batch_size)
    before = candidates[:, :top]
    variants = {
        variant: serving.lists(candidates, scores, top, replace(rules, diversity_strength=strength), batch_size)
        for variant, strength in ((RULES_VARIANT, 0.0), (RERANKED_VARIANT, rules.diversity_strength))
    }
    rows: list[dict[str, Any]] = []
    for variant, listed in variants.items():  # two variants
        variant_rows, scores = evaluation_rows(
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
    cutoff and scores the same lists as :func:`reranked_rows`, once per
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
    window = EvaluationWindow.of(data, to_epoch_seconds(cutoff), to_epoch_seconds(end), ks)
    model = build_model(champion, json.loads(params or "{}"), config).fit(window.split.train, window.split.cutoff)
    popularity = item_popularity(window.split.train)
    table = {}
    for strength in strengths:  # a handful of settings
        rows = pd.DataFrame(
            reranked_rows(
                model, window, replace(rules, diversity_strength=strength), ks, [], popularity, config, batch_size
            )
        )
        chosen = rows[(rows["variant"] == RERANKED_VARIANT) & (rows["segment"] == "all") & (rows["k"] == k)]
        table[strength] = chosen.set_index("metric")["metric_value"]
    result = pd.DataFrame(table).T
    result.index.name = "strength"
    logger.info("diversity sweep of %s on %d test users", champion, len(window.users))
    return result
