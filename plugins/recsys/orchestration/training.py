"""The train-and-evaluate task: tune on the validation window, choose the champion, report on the test window.

It takes a psycopg2 connection (or a DSN), a ``run_id`` and the data interval, reads ``analytics.*`` with
``COPY ... TO STDOUT`` and writes ``ml.model_evaluations``, ``ml.model_search`` and ``ml.runs`` in one
transaction that first deletes the rows of its ``run_id``, so a re-run replaces them. "Now" is always
``data_interval_end``, never the wall clock.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from recsys.db import frames, runs
from recsys.evaluation import windows
from recsys.evaluation.offline import (
    EVAL_KS,
    EVAL_VARIANT,
    NEW_ITEMS_VARIANT,
    EvaluationWindow,
    catalogue_ids,
    evaluation_rows,
    item_categories,
    item_popularity,
    json_float,
    new_catalogue_rows,
    pair_rows,
    user_segmentations,
    without_items,
)
from recsys.evaluation.selection import (
    ServedLists,
    gate_placements,
    placement_champions_json,
    placement_rows,
    reranked_rows,
    run_fits,
    select_models,
)
from recsys.features.interactions import (
    SECONDS_PER_DAY,
    Timestamp,
    as_datetime,
    load_interactions,
)
from recsys.models.base import Recommender
from recsys.models.registry import (
    build_model,
    load_model_config,
    min_segment_users,
)
from recsys.models.shared_fits import frames_for, shared_fits
from recsys.serving import placements
from recsys.serving.rules import BusinessRules, load_business_rules
from recsys.usecases import cold_start

logger = logging.getLogger(__name__)


def new_items_rows(
    name: str,
    recommended: np.ndarray,
    test: EvaluationWindow,
    ks: tuple[int, ...],
    k: int,
    segmentations: list[tuple[np.ndarray, list[str]]],
    categories: np.ndarray,
    popularity: np.ndarray,
    config: dict[str, Any],
) -> tuple[list[dict[str, Any]], float | None]:
    """A model's rows of variant ``new_items`` and its NDCG@k there (``None``: no user has such truth).

    What each user bought before the cutoff leaves the ranking (the rest moves up) and the truth; users left
    without truth are not evaluated.
    """
    new = test.has_new
    if not new.any():
        return [], None
    rows, values = evaluation_rows(
        name,
        NEW_ITEMS_VARIANT,
        without_items(recommended[new], test.prior[new], max(ks)),
        test.truth_new[new],
        ks,
        [(codes[new], names) for codes, names in segmentations],
        categories,
        popularity,
        test.split.train.n_users,
        min_segment_users(config),
    )
    return rows, json_float(values[("ndcg", k)])


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
       the lists pass the serving layers (business rules, re-rank, fill). A shop with more than
       ``[evaluation] search_users`` users with events searches on a fixed-seed sample of that many
       (:func:`recsys.evaluation.windows.sample_users`); the report and the served models fit on every user.
       Every trial goes to ``ml.model_search``; the best parameters per model
       and the champion (:func:`champion_gate`) are chosen by NDCG@k of the
       lists as served, so the champion is the model whose served lists are
       best (see :func:`select_models`). The learned rankers and their trials
       share the candidate models' fits, training pairs and candidate frames
       of a window (:func:`recsys.models.shared_fits.shared_fits`): each is
       computed once, with the results of computing it per ranker. Each placement
       (:mod:`recsys.serving.placements`: ``for_you``, ``discover``, ``buy_again``)
       gets a champion of its own, gated on its served lists against its own truth
       (:func:`gate_placements`).
    2. **Report.** The chosen model of every name is refitted on the events
       before the test cutoff and scored on the purchases in ``[test_cutoff,
       end)``: ``ml.model_evaluations`` gets precision, recall, NDCG, hit
       rate, F1 and MAP at 5/10/20 for segment ``all`` and per ``user_type``,
       ``lifecycle_stage`` and ``spending_power`` segment, plus catalogue
       ``coverage``, ``diversity`` and ``novelty`` for ``all``, in two
       variants: ``all_items``, and ``new_items`` (what each user bought before
       the cutoff leaves the ranking, the rest moves up, and the truth; users
       left without truth are not evaluated), and ``new_catalogue`` (the same
       lists against the purchases of items first sold in the window, and
       ``new_item_coverage``: see :func:`recsys.evaluation.offline.new_catalogue_rows`;
       the candidates are every ``dim_items`` item listed by the cutoff). Models that score pairs add
       ``roc_auc`` (k 0: over their candidate pairs), ``svd`` adds ``rmse``
       and ``mae`` (k 0) on the ratings given in the test window. The
       champion is also scored after the business rules (variant
       ``business_rules``) and after the rules and the diversity re-rank
       (``reranked``), with ``category_coverage`` for those and its
       ``all_items`` lists, so the accuracy cost of the layers is queryable.
       Every model's served lists of each placement are scored on that
       placement's truth: variants ``placement_for_you``, ``placement_discover``
       and ``placement_buy_again`` (segment ``all``, :func:`placement_rows`).
    3. **Cold start.** :func:`recsys.usecases.cold_start.evaluate_new_users` scores
       global popularity, segment popularity and the demographic model on the
       users who signed up in the test window (segment ``new_users``).

    ``ml.runs`` gets status ``evaluated``, the champion, its parameters and
    the gate's reason, and ``placement_champions`` (JSON: model, parameters and
    reason per placement).

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
        and ``reranked``, see :func:`reranked_rows`); default :func:`recsys.serving.rules.load_business_rules`.

    Returns
    -------
    dict
        JSON-safe summary for XCom: ``run_id``, ``champion_model``,
        ``champion_params``, ``champion_reason``, cutoffs, user counts,
        ``metrics`` and ``metrics_new_items`` (test NDCG@k per model),
        ``metrics_placements`` (test NDCG@max(ks) per model and placement),
        ``placement_champions`` and
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
            data = load_interactions(connection, start, end, item_ids=catalogue_ids(connection), side_data=True)
            max_users = int(evaluation.get("max_users", 50_000))
            searched = windows.sample_users(data.before(test_cutoff), int(evaluation.get("search_users", 200_000)))
            validation = EvaluationWindow.of(searched, validation_cutoff, test_cutoff, ks, max_users)
            trials, chosen, validation_ndcg = select_models(validation, config, k, batch_size, rules)
            shelf_champions = gate_placements(validation_ndcg, gate, k)
            champion, reason = shelf_champions[placements.FOR_YOU]
            logger.info("run %s champion: %s", run_id, reason)

            test = EvaluationWindow.of(data, test_cutoff, end, ks, max_users)
            train = test.split.train
            scoring = _TestScoring.of(connection, test, ks, k, config, rules, batch_size)
            rows: list[dict[str, Any]] = []
            summary, summary_new, summary_shelves, fit_seconds = {}, {}, {}, {}
            scored = run_fits(partial(_score_group, scoring, champion), list(chosen.items()) if len(test.users) else [])
            for _, name, (model_rows, *summaries) in sorted(scored):
                summary[name], summary_new[name], summary_shelves[name], fit_seconds[name] = summaries
                rows += model_rows
                logger.info("%s (%.1f s): test NDCG@%d %s", name, fit_seconds[name], k, summary[name])
            if not len(test.users):
                logger.warning("run %s: no purchases in the test window, nothing to evaluate", run_id)
            cold_rows, cold_summary = cold_start.evaluate_new_users(connection, data, test_cutoff, end, config, ks, k)
            rows += cold_rows

            written = _write_evaluations(connection, run_id, rows, trials)
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
                placement_champions=placement_champions_json(shelf_champions, chosen, config),
            )
    return {
        "run_id": run_id,
        "champion_model": champion,
        "champion_params": champion_params,
        "champion_reason": reason,
        "validation_cutoff_at": as_datetime(validation_cutoff).isoformat(),
        "eval_cutoff_at": as_datetime(test_cutoff).isoformat(),
        "n_train_events": int(train.n_events),
        "n_search_users": int(validation.split.train.n_users),
        "n_validation_users": int(len(validation.users)),
        "n_test_users": int(len(test.users)),
        "search_trials": int(len(trials)),
        "evaluation_rows": written,
        "metrics": summary,
        "metrics_new_items": summary_new,
        "metrics_placements": summary_shelves,
        "placement_champions": {placement: model for placement, (model, _) in shelf_champions.items()},
        "fit_seconds": fit_seconds,
        "cold_start": cold_summary,
    }


def _write_evaluations(connection: Any, run_id: str, rows: list[dict[str, Any]], trials: pd.DataFrame) -> int:
    """Replace the run's ``ml.model_evaluations`` and ``ml.model_search`` rows; the evaluation rows written."""
    evaluations = pd.DataFrame(rows, columns=["model_name", "variant", "segment", "metric", "k", "metric_value"])
    evaluations.insert(0, "run_id", run_id)
    trials.insert(0, "run_id", run_id)
    runs.delete_run(connection, ["ml.model_evaluations", "ml.model_search"], run_id)
    written = frames.copy_frame(connection, "ml.model_evaluations", evaluations)
    frames.copy_frame(connection, "ml.model_search", trials)
    return written


@dataclass
class _TestScoring:
    """What every model is scored with on the test window."""

    test: EvaluationWindow
    ks: tuple[int, ...]
    k: int
    segmentations: list[tuple[np.ndarray, list[str]]]
    categories: np.ndarray
    popularity: np.ndarray
    config: dict[str, Any]
    rules: BusinessRules
    batch_size: int
    shelves: ServedLists | None

    @classmethod
    def of(
        cls,
        connection: Any,
        test: EvaluationWindow,
        ks: tuple[int, ...],
        k: int,
        config: dict[str, Any],
        rules: BusinessRules,
        batch_size: int,
    ) -> _TestScoring:
        train = test.split.train
        return cls(
            test,
            ks,
            k,
            user_segmentations(connection, train.user_ids[test.users], np.diff(test.prior.indptr)),
            item_categories(train),
            item_popularity(train),
            config,
            rules,
            batch_size,
            ServedLists.of(test, rules, max(ks)) if len(test.users) else None,
        )

    def rows(self, model: Recommender, with_reranked: bool) -> tuple[list[dict[str, Any]], Any, Any, dict, float]:
        """``ml.model_evaluations`` rows of one model (every variant), its NDCG@k summaries and fit seconds."""
        test, ks, k, segmentations = self.test, self.ks, self.k, self.segmentations
        categories, popularity, config = self.categories, self.popularity, self.config
        fit_started = time.perf_counter()
        items, scores = test.candidates(model, max(test.wide, self.shelves.shelf_width), self.batch_size)
        recommended = items[:, : test.wide]
        seconds = round(time.perf_counter() - fit_started, 3)
        rows, values = evaluation_rows(
            model.name,
            EVAL_VARIANT,
            recommended[:, : max(ks)],
            test.truth,
            ks,
            segmentations,
            categories,
            popularity,
            test.split.train.n_users,
            min_segment_users(config),
        )
        new_rows, ndcg_new = new_items_rows(
            model.name, recommended, test, ks, k, segmentations, categories, popularity, config
        )
        rows += new_rows
        rows += new_catalogue_rows(model.name, recommended, test, ks, segmentations, min_segment_users(config))
        rows += pair_rows(model, test, self.batch_size)
        shelf_rows, shelf_ndcg = placement_rows(
            model.name, items, scores, test, self.shelves, self.rules, ks, self.batch_size, categories, popularity
        )
        rows += shelf_rows
        if with_reranked:
            rows += reranked_rows(model, test, self.rules, ks, segmentations, popularity, config, self.batch_size)
        shelves = {placement: json_float(value) for placement, value in shelf_ndcg.items()}
        return rows, json_float(values[("ndcg", k)]), ndcg_new, shelves, seconds


def _score_group(
    scoring: _TestScoring, champion: str, group: list[tuple[int, str, dict[str, Any]]]
) -> list[tuple[int, str, tuple]]:
    """:meth:`_TestScoring.rows` of every chosen model of ``group`` (number, name, parameters), in a worker."""
    # the learned rankers of a group share their candidate models' fits and frames
    with shared_fits(frames_for(len(scoring.test.users), scoring.batch_size)):
        return [
            (number, name, scoring.rows(build_model(name, params, scoring.config), with_reranked=name == champion))
            for number, name, params in group
        ]
