"""The learned rankers (the MLP and LightGBM's LambdaMART) on a planted shop where the profile decides.

400 users, 60 items in 3 categories of 20. Every user has one favourite
category and buys in it 9 times out of 10, a new item each week for 8 weeks,
after viewing it. Which items of the category they buy is random: there is no
item-to-item structure for collaborative filtering beyond the category, and
popularity is flat. A ranker that reads the user's category interest must put
the favourite category's unbought items first; both rankers must.

The interest shares come from the dbt profile function (``analytics.user_profile_features_as_of``), so the
shop's events and items are written to a small warehouse (fixture ``profile_warehouse``); without it the
profile columns are 0 and the ranker has only the candidates' ranks and the item features.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from recsys.evaluation.metrics import evaluate, roc_auc
from recsys.evaluation.windows import time_split
from recsys.features.interactions import SECONDS_PER_DAY, Interactions, lookup
from recsys.models.factorization import ALSRecommender
from recsys.models.knn import ItemKNNRecommender
from recsys.models.lgbm_ranker import LightGBMRanker
from recsys.models.neural_ranker import NeuralRanker
from recsys.models.popularity import PopularityRecommender

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
WEEK = 7 * SECONDS_PER_DAY
N_USERS, N_ITEMS, N_CATEGORIES, WEEKS = 400, 60, 3, 8


def planted_shop(seed: int = 0) -> tuple[Interactions, np.ndarray]:
    """The shop of the module docstring and each user's favourite category."""
    rng = np.random.default_rng(seed)
    favourite = rng.integers(0, N_CATEGORIES, N_USERS)
    item_category = np.arange(N_ITEMS) % N_CATEGORIES
    by_category = [np.flatnonzero(item_category == category) for category in range(N_CATEGORIES)]
    week = np.repeat(np.arange(WEEKS), N_USERS)
    users = np.tile(np.arange(N_USERS), WEEKS)
    category = np.where(rng.random(len(users)) < 0.9, favourite[users], rng.integers(0, N_CATEGORIES, len(users)))
    # a random item of the category (repeats are rare: 20 items per category)
    items = np.array([by_category[c] for c in range(N_CATEGORIES)])[category, rng.integers(0, 20, len(users))]
    when = T0 + week * WEEK + rng.uniform(0, WEEK - 3600, len(users))
    frame = pd.DataFrame(
        {
            "user_id": np.char.add("u", users.astype(str)),
            "item_id": np.char.add("i", items.astype(str)),
            "event_type": "purchase",
            "event_ts": when,
        }
    )
    views = frame.assign(event_type="view", event_ts=frame["event_ts"] - 60)
    data = Interactions.from_frame(pd.concat([views, frame], ignore_index=True)).with_side_data(
        items=pd.DataFrame(
            {
                "item_id": [f"i{index}" for index in range(N_ITEMS)],
                "category": [f"c{category}" for category in item_category],
                "brand": "b",
                "price": 10.0,
            }
        )
    )
    favourite_by_index = favourite[pd.Index([f"u{index}" for index in range(N_USERS)]).get_indexer(data.user_ids)]
    return data, favourite_by_index


def ranker(**params) -> NeuralRanker:
    defaults = dict(candidates_per_model=60, label_windows=3, max_iter=200, random_state=0)
    return NeuralRanker(candidate_models=[PopularityRecommender(), ItemKNNRecommender(k=20)], **(defaults | params))


@pytest.fixture(scope="module")
def shop(profile_warehouse) -> tuple[Interactions, np.ndarray]:
    data, favourite = planted_shop()
    return replace(data, profile_source=profile_warehouse(data)), favourite


@pytest.fixture(scope="module")
def split(shop):
    data, _ = shop
    return time_split(data, T0 + (WEEKS - 1) * WEEK, T0 + WEEKS * WEEK)


@pytest.fixture(scope="module")
def fitted(split) -> NeuralRanker:
    return ranker().fit(split.train, split.cutoff)


def test_it_learns_the_planted_category_interest(fitted: NeuralRanker, shop, split) -> None:
    _, favourite = shop
    assert fitted.model_ is not None and fitted.train_positives_ > 500
    users = split.test_users
    items, _ = fitted.recommend(users, n=5, exclude_seen=True)
    item_category = np.array([int(name[1:]) % N_CATEGORIES for name in split.train.item_ids])
    in_favourite = item_category[items] == favourite[users][:, None]
    assert in_favourite.mean() > 0.9, "unbought items of the favourite category come first"


def test_it_beats_popularity_on_the_next_week(fitted: NeuralRanker, split) -> None:
    users = split.test_users
    truth = split.truth[users]
    ranked, _ = fitted.recommend(users, n=10)
    popular, _ = PopularityRecommender().fit(split.train, split.cutoff).recommend(users, n=10)
    ndcg = evaluate(ranked, truth, (10,))[("ndcg", 10)]
    assert ndcg > 2 * evaluate(popular, truth, (10,))[("ndcg", 10)]
    rows, candidates, scores = fitted.score_candidates(users)
    assert np.all((scores > 0) & (scores <= 1))
    assert roc_auc(scores, lookup(truth, rows, candidates) > 0) > 0.75


def test_fit_never_reads_events_at_or_after_the_reference_time(shop, split) -> None:
    data, _ = shop
    with_future = ranker().fit(data, split.cutoff)  # the test week is in the data but after the reference
    without = ranker().fit(split.train, split.cutoff)
    users = np.arange(split.train.n_users)  # train users come first in both encodings
    first, second = with_future.recommend(users, n=8), without.recommend(users, n=8)
    np.testing.assert_array_equal(
        data.item_ids[first[0]], split.train.item_ids[second[0]], err_msg="the future changed the lists"
    )


def test_without_labels_it_falls_back_to_rank_fusion(split) -> None:
    model = ranker(label_windows=1).fit(split.train.before(T0 + 3 * SECONDS_PER_DAY), T0 + 3 * SECONDS_PER_DAY)
    assert model.model_ is None and model.train_rows_ == 0
    items, scores = model.recommend(np.arange(10), n=5)
    assert np.all(items >= 0) and np.all(np.diff(scores, axis=1) <= 0)


def test_profile_ablation_keeps_only_candidate_and_item_features(split) -> None:
    model = ranker(profile_features=False, label_windows=1).fit(split.train, split.cutoff)
    assert model.feature_names_ == [
        "rank_popularity",
        "rank_item_knn",
        "item_purchases_30d",
        "item_views_30d",
        "item_trend",
        "item_age_days",
        "item_log_price",
    ]
    assert model.model_.n_features_in_ == len(model.feature_names_)


def test_without_a_profile_source_the_profile_columns_are_zero(split, caplog) -> None:
    """Interactions built without a warehouse: no second implementation of the profile, its columns are 0."""
    train = replace(split.train, profile_source=None)
    with caplog.at_level(logging.WARNING, logger="recsys.models.ranker"):
        model = ranker(label_windows=1, max_iter=20).fit(train, split.cutoff)
    assert model.profile_.user is None
    assert model.feature_names_ == ranker().fit(split.train, split.cutoff).feature_names_
    users = split.test_users[:50]
    rows, items, _ = model._candidates(model.profile_, users, None)
    features = model._features(model.profile_, users, rows, items)
    zero = [model.feature_names_.index(name) - 2 for name in ("category_interest", "user_events", "price_gap")]
    assert np.all(features[:, zero] == 0)


# ----------------------------------------------------------------------------- LightGBM's LambdaMART


def lgbm_ranker(**params) -> LightGBMRanker:
    defaults = dict(
        candidate_models=[PopularityRecommender(), ItemKNNRecommender(k=20)],
        candidates_per_model=60,
        label_windows=3,
        n_estimators=50,
        random_state=0,
    )
    return LightGBMRanker(**(defaults | params))


@pytest.fixture(scope="module")
def fitted_lgbm(split) -> LightGBMRanker:
    return lgbm_ranker().fit(split.train, split.cutoff)


def test_lgbm_it_learns_the_planted_category_interest(fitted_lgbm: LightGBMRanker, shop, split) -> None:
    _, favourite = shop
    assert fitted_lgbm.model_ is not None and fitted_lgbm.train_positives_ > 500
    # one query per user and label window with a bought candidate: at most 400 users x 3 windows
    assert 0 < fitted_lgbm.train_queries_ <= 3 * 400
    users = split.test_users
    items, _ = fitted_lgbm.recommend(users, n=5, exclude_seen=True)
    item_category = np.array([int(name[1:]) % N_CATEGORIES for name in split.train.item_ids])
    in_favourite = item_category[items] == favourite[users][:, None]
    assert in_favourite.mean() > 0.9, "unbought items of the favourite category come first"
    gain = fitted_lgbm.model_.booster_.feature_importance("gain")
    ordered = [fitted_lgbm.feature_names_[index] for index in np.argsort(-gain)]
    assert ordered[0] == "category_interest", "the planted feature carries the most gain"
    assert gain.max() > 3 * np.sort(gain)[-2], "by far"


def test_lgbm_it_beats_popularity_on_the_next_week(fitted_lgbm: LightGBMRanker, split) -> None:
    users = split.test_users
    truth = split.truth[users]
    ranked, _ = fitted_lgbm.recommend(users, n=10)
    popular, _ = PopularityRecommender().fit(split.train, split.cutoff).recommend(users, n=10)
    assert evaluate(ranked, truth, (10,))[("ndcg", 10)] > 2 * evaluate(popular, truth, (10,))[("ndcg", 10)]
    rows, candidates, scores = fitted_lgbm.score_candidates(users)
    assert np.all((scores > 0) & (scores < 1))
    assert roc_auc(scores, lookup(truth, rows, candidates) > 0) > 0.75


def test_lgbm_two_fits_give_identical_scores(fitted_lgbm: LightGBMRanker, split) -> None:
    users = split.test_users
    again = clone(fitted_lgbm).fit(split.train, split.cutoff)
    first, second = fitted_lgbm.score_candidates(users), again.score_candidates(users)
    for one, other in zip(first, second, strict=True):
        np.testing.assert_array_equal(one, other)


def test_lgbm_more_threads_give_the_same_scores(fitted_lgbm: LightGBMRanker, split) -> None:
    """``deterministic`` with row-wise histograms: two threads build the same trees as one."""
    users = split.test_users
    threaded = clone(fitted_lgbm).set_params(n_jobs=2).fit(split.train, split.cutoff)
    np.testing.assert_array_equal(fitted_lgbm.score_candidates(users)[2], threaded.score_candidates(users)[2])


def test_lgbm_without_labels_it_falls_back_to_rank_fusion(split) -> None:
    model = lgbm_ranker(label_windows=1).fit(split.train.before(T0 + 3 * SECONDS_PER_DAY), T0 + 3 * SECONDS_PER_DAY)
    assert model.model_ is None and model.train_rows_ == 0
    items, scores = model.recommend(np.arange(10), n=5)
    assert np.all(items >= 0) and np.all(np.diff(scores, axis=1) <= 0)


def test_lgbm_refit_candidates_with_the_same_learner_scores_as_the_fit(fitted_lgbm: LightGBMRanker, split) -> None:
    """An incremental run keeps the learner and refits the candidates: at the fit's own time it gives the fit's
    scores; a day later the candidates see the new day while the learner is the same object."""
    users = split.test_users
    learner, names = fitted_lgbm.model_, fitted_lgbm.feature_names_
    again = lgbm_ranker().refit_candidates(split.train, split.cutoff, learner, names)
    for one, other in zip(fitted_lgbm.score_candidates(users), again.score_candidates(users), strict=True):
        np.testing.assert_array_equal(one, other)
    assert again.train_rows_ == 0
    later = split.cutoff + SECONDS_PER_DAY
    next_day = lgbm_ranker().refit_candidates(split.train, later, learner, names)
    assert next_day.model_ is learner and next_day.reference_time_ == later
    with pytest.raises(ValueError, match="the learner was trained on"):
        lgbm_ranker(profile_features=False).refit_candidates(split.train, split.cutoff, learner, names)


def test_a_refit_starts_its_als_candidate_from_the_full_runs_item_factors(fitted_lgbm: LightGBMRanker, split) -> None:
    """An incremental run's ranker refits an ALS candidate from the item factors the full run stored under the
    candidate's key, and from scratch without them."""
    als = ALSRecommender(factors=4, random_state=0)
    names = [name.replace("rank_item_knn", "rank_als") for name in fitted_lgbm.feature_names_]
    earlier = clone(als).fit(split.train, split.cutoff - SECONDS_PER_DAY).item_factors()
    data = split.train.before(split.cutoff)
    for warm_start, expected in [
        ({als.warm_start_key(): earlier}, clone(als).fit(data, split.cutoff, warm_start=earlier)),
        ({"als_item_factors of other parameters": earlier}, clone(als).fit(data, split.cutoff)),
    ]:
        ranker = lgbm_ranker(candidate_models=[PopularityRecommender(), als])
        ranker.refit_candidates(split.train, split.cutoff, fitted_lgbm.model_, names, warm_start=warm_start)
        np.testing.assert_array_equal(ranker.profile_.models[1].item_factors_, expected.item_factors_)
