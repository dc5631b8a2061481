"""The search and the test-window scoring give the same results in one process and in two workers.

A small random shop (400 users, 60 items, 6 weeks). The search runs popularity, item-KNN, ALS and both
learned rankers (whose fits share candidates, so they are one task) with a grid: once with
``RECSYS_WORKERS=1`` (in this process) and once with 2 worker processes. Every trial's scores, the chosen
parameters and the per-user NDCG of every placement must be equal; only the measured seconds differ. A
ranker fitted outside a worker computes its label windows in workers: the same pairs and scores.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pandas as pd
import pytest

from recsys.evaluation.offline import EvaluationWindow
from recsys.evaluation.selection import run_fits, select_models
from recsys.features.interactions import SECONDS_PER_DAY
from recsys.models.lgbm_ranker import LightGBMRanker
from recsys.models.registry import load_model_config
from recsys.models.workers import map_in_workers, worker_count
from recsys.serving.rules import load_business_rules

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
WEEK = 7 * SECONDS_PER_DAY
MODELS = ("popularity", "item_knn", "als", "neural_ranker", "lgbm_ranker")


@pytest.fixture(scope="module")
def window(random_shop) -> EvaluationWindow:
    data = random_shop(seed=5, events=6_000, users=400, items=60, p=0.06, categories=5, brands=4)
    return EvaluationWindow.of(data, T0 + 5 * WEEK, T0 + 6 * WEEK, (5, 10))


def small_config() -> dict:
    config = copy.deepcopy(load_model_config())
    config["models"] = {name: config["models"][name] for name in MODELS}
    for name in ("neural_ranker", "lgbm_ranker"):
        config["models"][name]["params"] |= {"label_windows": 2, "candidates_per_model": 20}
    config["models"]["neural_ranker"]["params"]["max_iter"] = 30
    config["models"]["als"]["params"] |= {"factors": 8, "iterations": 5}
    return config


def test_one_process_and_two_workers_give_the_same_search(window, monkeypatch):
    config, rules = small_config(), load_business_rules()
    runs = {}
    for workers in ("1", "2"):
        monkeypatch.setenv("RECSYS_WORKERS", workers)
        runs[workers] = select_models(window, config, 10, 100, rules)
    (trials_1, chosen_1, per_user_1), (trials_2, chosen_2, per_user_2) = runs["1"], runs["2"]
    assert len(trials_1) > len(MODELS)  # the grids ran, not just the defaults
    assert trials_1["ndcg_served"].notna().all()
    columns = [column for column in trials_1.columns if column != "fit_seconds"]
    pd.testing.assert_frame_equal(trials_1[columns], trials_2[columns])
    assert chosen_1 == chosen_2
    for name, shelves in per_user_1.items():
        for placement, values in shelves.items():
            np.testing.assert_array_equal(values, per_user_2[name][placement])


def test_a_rankers_label_windows_in_workers_give_the_same_ranker(window, monkeypatch):
    # outside a worker, a ranker's fit computes its label windows and its profile side by side
    scored = {}
    for workers in ("1", "2"):
        monkeypatch.setenv("RECSYS_WORKERS", workers)
        model = LightGBMRanker(candidates_per_model=20, label_windows=3, n_estimators=20, random_state=0)
        model.fit(window.split.train, window.split.cutoff)
        scored[workers] = (*model.score_candidates(window.users), model.train_rows_, model.candidate_recall_)
    assert scored["1"][3] > 0
    for one, two in zip(scored["1"], scored["2"], strict=True):
        np.testing.assert_array_equal(one, two)


def where(group: list) -> list:
    return [(number, name, os.getpid()) for number, name, _ in group]


def test_the_rankers_fit_here_first_the_others_in_workers(monkeypatch):
    monkeypatch.setenv("RECSYS_WORKERS", "2")
    planned = [("popularity", {}), ("neural_ranker", {}), ("als", {}), ("lgbm_ranker", {"num_leaves": 7})]
    done = run_fits(where, planned)
    here = os.getpid()
    assert done[:2] == [(1, "neural_ranker", here), (3, "lgbm_ranker", here)]
    assert [number for number, *_ in done[2:]] == [0, 2]
    assert all(pid != here for *_, pid in done[2:]), "the other fits ran in the worker processes"


def test_results_come_back_in_the_order_of_the_tasks():
    assert map_in_workers(abs, [-3, 1, -2, 5], workers=2) == [3, 1, 2, 5]


def test_workers_setting(monkeypatch):
    monkeypatch.setenv("RECSYS_WORKERS", "3")
    assert worker_count() == 3
    monkeypatch.setenv("RECSYS_WORKERS", "0")
    with pytest.raises(ValueError, match="RECSYS_WORKERS must be a positive integer"):
        worker_count()
