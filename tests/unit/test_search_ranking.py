"""Ranking, metrics and the ranker of ``recsys.usecases.search`` on hand-computed cases (no database)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.usecases.search import FEATURES, SearchRanker, rank_metrics, reasons_of, rerank


def test_rank_metrics_of_hand_computed_ranks():
    # chosen items at ranks 1, 2, 4 and 12; a fifth search's item was not ranked (0)
    metrics = rank_metrics(np.array([1, 2, 4, 12, 0]), k=10)
    assert metrics["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 4 + 1 / 12 + 0) / 5)
    assert metrics["ndcg"] == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(5)) / 5)
    assert metrics["hit_rate"] == pytest.approx(3 / 5)
    assert metrics["searches"] == 5


def test_rerank_orders_within_each_search_by_score_then_base_rank():
    candidates = pd.DataFrame(
        {"search_id": ["s1", "s1", "s1", "s2", "s2"], "base_rank": [1, 2, 3, 1, 2]},
        index=[10, 11, 12, 13, 14],  # an index that is not 0..n-1
    )
    scores = np.array([0.1, 0.9, 0.1, 0.0, 0.0])
    # s1: the second item moves to the top, the tie of the others keeps the base order; s2 ties: base order
    np.testing.assert_array_equal(rerank(candidates, scores), [2, 1, 3, 1, 2])


def test_ranker_learns_the_feature_that_picks_the_chosen_item_and_round_trips():
    rng = np.random.default_rng(0)
    features = pd.DataFrame(rng.random((400, len(FEATURES))), columns=list(FEATURES))
    chosen = (features["price_fit"] > 0.8).astype(int).to_numpy()  # only the price fit decides
    ranker = SearchRanker().fit(features, chosen)
    coefficients = dict(zip(FEATURES, ranker.coef_, strict=True))
    assert coefficients["price_fit"] == max(coefficients.values()) and coefficients["price_fit"] > 1
    restored = SearchRanker.from_frame(ranker.to_frame("run_x"))
    np.testing.assert_allclose(restored.score(features), ranker.score(features))
    np.testing.assert_allclose(ranker.contributions(features).sum(axis=1) + ranker.intercept_, ranker.score(features))


def test_reasons_name_the_feature_lifting_the_item_most_above_its_search():
    candidates = pd.DataFrame(
        {"search_id": "s1", "category": ["Home", "Home", "Home"], "brand": ["Lumen", "Acme", None]}
    )
    contributions = np.zeros((3, len(FEATURES)))
    contributions[0, FEATURES.index("brand_affinity")] = 0.5
    contributions[1, FEATURES.index("category_affinity")] = 0.2
    contributions[:, FEATURES.index("popularity")] = [0.4, 0.4, 0.1]  # lifts row 0 less than its brand does
    # row 1: category lifts 0.2 - 0.067, popularity 0.4 - 0.3; row 2: nothing above the mean
    assert reasons_of(candidates, contributions).tolist() == [
        "you like Lumen",
        "you often shop Home",
        "matches your search",
    ]
    assert reasons_of(candidates, None).tolist() == ["matches your search"] * 3
