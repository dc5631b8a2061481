"""The learned rankers share their candidate fits and training pairs inside ``shared_fits``, with the same results.

A small random shop: 300 users buy and view 40 items over 6 weeks. Both
rankers take their candidates from a popularity model that counts its fits
and from item-KNN, with 3 label weeks: each ranker fits the candidate models
at 4 cutoffs (the 3 label-week starts and the reference time). Two rankers
fitted without sharing fit them 8 times; inside ``shared_fits`` 4 times, once
per cutoff, and both rankers score every pair exactly as they do alone.
"""

from __future__ import annotations

from typing import ClassVar, Self

import numpy as np
import pytest

from recsys.evaluation.windows import time_split
from recsys.features.interactions import EVENT_TYPES, SECONDS_PER_DAY, Interactions, Timestamp
from recsys.models.knn import ItemKNNRecommender
from recsys.models.lgbm_ranker import LightGBMRanker
from recsys.models.neural_ranker import NeuralRanker
from recsys.models.popularity import PopularityRecommender
from recsys.models.ranker import CandidateRanker
from recsys.models.shared_fits import cached, frames_for, shared_fits

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
WEEK = 7 * SECONDS_PER_DAY
LABEL_WINDOWS = 3


class CountingPopularity(PopularityRecommender):
    """Popularity that records the reference time of every fit (of any clone)."""

    fits: ClassVar[list[float]] = []

    def fit(self, interactions: Interactions, reference_time: Timestamp | None = None) -> Self:
        CountingPopularity.fits.append(float(reference_time))
        return super().fit(interactions, reference_time)


@pytest.fixture(autouse=True)
def one_process(monkeypatch):
    """The fits are counted in this process: no worker processes (a ranker's label windows run in them)."""
    monkeypatch.setenv("RECSYS_WORKERS", "1")


@pytest.fixture(scope="module")
def split(random_shop):
    data = random_shop(seed=3, events=3_000, users=300, items=40, p=0.08, categories=4, brands=3)
    return time_split(data, T0 + 5 * WEEK, T0 + 6 * WEEK)


def candidates() -> list:
    return [CountingPopularity(), ItemKNNRecommender(k=10)]


def neural(**params) -> NeuralRanker:
    defaults = dict(candidates_per_model=20, label_windows=LABEL_WINDOWS, max_iter=30, random_state=0)
    return NeuralRanker(candidate_models=candidates(), **(defaults | params))


def lgbm(**params) -> LightGBMRanker:
    defaults = dict(candidates_per_model=20, label_windows=LABEL_WINDOWS, n_estimators=20, random_state=0)
    return LightGBMRanker(candidate_models=candidates(), **(defaults | params))


def fitted(models: list[CandidateRanker], split) -> list[CandidateRanker]:
    CountingPopularity.fits.clear()
    return [model.fit(split.train, split.cutoff) for model in models]


def outputs(model: CandidateRanker, split) -> list:
    """What a ranker gives: its candidate pairs and their scores, its lists, what it learnt from."""
    users = split.test_users
    return [*model.score_candidates(users), model.recommend(users, n=10)[0], model.candidate_recall_, model.train_rows_]


def test_without_sharing_each_ranker_fits_the_candidates_at_every_cutoff(split) -> None:
    fitted([neural(), lgbm(), lgbm(num_leaves=7)], split)
    assert len(CountingPopularity.fits) == 3 * (LABEL_WINDOWS + 1)


def test_inside_shared_fits_the_candidates_are_fitted_once_per_cutoff(split) -> None:
    with shared_fits() as cache:
        fitted([neural(), lgbm(), lgbm(num_leaves=7)], split)
    cutoffs = [split.cutoff - window * WEEK for window in range(LABEL_WINDOWS + 1)]
    assert sorted(CountingPopularity.fits) == sorted(cutoffs), "once at each label week's start and at the cutoff"
    assert cache.misses == {"fit": 1} and cache.hits == {"fit": 2}
    assert not cache.entries, "nothing is kept after the block"


def test_shared_fits_give_the_same_scores_as_fitting_alone(split) -> None:
    alone = [outputs(model, split) for model in fitted([neural(), lgbm()], split)]
    with shared_fits() as cache:
        models = fitted([neural(), lgbm()], split)
        shared = [outputs(model, split) for model in models]
    for one, other in zip(alone, shared, strict=True):
        for left, right in zip(one, other, strict=True):
            np.testing.assert_array_equal(left, right)
    assert models[0].profile_ is models[1].profile_, "the second ranker reuses the first one's candidate fits"
    # score_candidates then recommend of the same users, by each ranker: one candidate frame
    assert cache.misses["frame"] == 1 and cache.hits["frame"] == 3


def test_refits_of_the_candidates_are_shared_with_the_same_scores(split) -> None:
    """An incremental run refits two placements' rankers (each keeping its learner): inside ``shared_fits`` the
    candidates are fitted once, the profile and the candidate frames are shared, the scores those of alone."""
    models = fitted([neural(), lgbm()], split)
    later = split.cutoff + WEEK
    learners = [(model.model_, model.feature_names_) for model in models]
    alone = [
        ranker.refit_candidates(split.train, later, *learner)
        for ranker, learner in zip([neural(), lgbm()], learners, strict=True)
    ]
    CountingPopularity.fits.clear()
    with shared_fits() as cache:
        shared = [
            ranker.refit_candidates(split.train, later, *learner)
            for ranker, learner in zip([neural(), lgbm()], learners, strict=True)
        ]
        scored = [outputs(model, split) for model in shared]
    assert CountingPopularity.fits == [later]
    assert shared[0].profile_ is shared[1].profile_ and cache.misses["profile"] == 1 and cache.hits["profile"] == 1
    assert cache.misses["frame"] == 1 and cache.hits["frame"] == 3
    for one, other in zip([outputs(model, split) for model in alone], scored, strict=True):
        for left, right in zip(one, other, strict=True):
            np.testing.assert_array_equal(left, right)


def test_a_block_keeps_the_frames_of_a_whole_pass_for_the_next_ranker(split) -> None:
    """Scoring more batches than the default 4 frames: sized by frames_for, the second ranker computes none."""
    users = np.arange(split.train.n_users)
    batch = -(-len(users) // 6)  # six batches
    batches = [users[first : first + batch] for first in range(0, len(users), batch)]
    for max_frames, computed in ((4, 12), (frames_for(len(users), batch), 6)):
        with shared_fits(max_frames) as cache:
            for model in fitted([neural(), lgbm()], split):
                for rows in batches:
                    model.score_candidates(rows)
        assert cache.misses["frame"] == computed
    assert frames_for(len(users), batch) == 12 and frames_for(10, 5_000) == 4


def test_other_pair_parameters_or_data_are_not_shared(split) -> None:
    with shared_fits():
        fitted([neural(), lgbm(candidates_per_model=10)], split)
        assert len(CountingPopularity.fits) == 2 * (LABEL_WINDOWS + 1), "other candidates per model: fitted again"
        CountingPopularity.fits.clear()
        lgbm().fit(split.train.before(split.cutoff - WEEK), split.cutoff - WEEK)
    assert len(CountingPopularity.fits) == LABEL_WINDOWS + 1, "other data: fitted again"


def test_cached_keeps_values_inside_a_block_only(split) -> None:
    with shared_fits():
        values = cached(split.train, ("test", 1), lambda: np.arange(3))
        assert cached(split.train, ("test", 1), lambda: np.zeros(3)) is values
    assert cached(split.train, ("test", 1), lambda: np.zeros(3)).sum() == 0, "outside a block nothing is kept"


def test_label_windows_stop_once_they_hold_min_label_users(split) -> None:
    train, cutoff = split.train, split.cutoff
    bought = train.event_type == EVENT_TYPES.index("purchase")
    last_week = bought & (train.event_ts >= cutoff - WEEK) & (train.event_ts < cutoff)
    buyers = len(np.unique(train.user_index[last_week]))
    fitted([lgbm(min_label_users=buyers)], split)
    assert sorted(CountingPopularity.fits) == [cutoff - WEEK, cutoff], "the last week holds enough label users"
    fitted([lgbm(min_label_users=buyers + 1)], split)
    assert sorted(CountingPopularity.fits) == [cutoff - 2 * WEEK, cutoff - WEEK, cutoff], "one week more"
