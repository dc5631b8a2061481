"""Ranking metrics against hand-computed values (the arithmetic is written next to each number)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.metrics import (
    catalogue_coverage,
    evaluate,
    f1_at_k,
    hit_matrix,
    hit_rate_at_k,
    map_at_k,
    ndcg_at_k,
    per_user_metrics,
    precision_at_k,
    recall_at_k,
)

LOG2_3 = math.log2(3)  # discount of rank 2 is 1 / log2(3) = 0.6309

# four users, top 3 each; the model knows items 0..7, the truth has 10 columns (8 and 9 were first
# seen in the test window, so they can be relevant but never recommended)
RECOMMENDED = np.array(
    [
        [2, 5, 7],  # user 0: truth {5, 9}  -> hit at rank 2 only
        [1, 0, -1],  # user 1: truth {1}    -> hit at rank 1; only two recommendations
        [4, 3, 2],  # user 2: no truth     -> left out of every mean
        [3, 4, 6],  # user 3: truth {0}     -> no hit
    ]
)
TRUTH = sp.csr_array(
    (np.ones(4), ([0, 0, 1, 3], [5, 9, 1, 0])),
    shape=(4, 10),
)


def test_hits() -> None:
    assert hit_matrix(RECOMMENDED, TRUTH).tolist() == [
        [False, True, False],
        [True, False, False],
        [False, False, False],
        [False, False, False],
    ]


def test_per_user_values_at_3() -> None:
    metrics = per_user_metrics(RECOMMENDED, TRUTH, 3)
    # user 0: precision 1/3; recall 1/2; DCG = 1/log2(3); IDCG over min(2, 3) = 2 hits = 1 + 1/log2(3)
    # user 1: precision 1/3 (the empty slot still counts in k); recall 1/1; DCG = IDCG = 1
    # user 3: all zero
    np.testing.assert_allclose(metrics["precision"][[0, 1, 3]], [1 / 3, 1 / 3, 0])
    np.testing.assert_allclose(metrics["recall"][[0, 1, 3]], [1 / 2, 1, 0])
    np.testing.assert_allclose(metrics["ndcg"][[0, 1, 3]], [(1 / LOG2_3) / (1 + 1 / LOG2_3), 1, 0])
    np.testing.assert_allclose(metrics["hit_rate"][[0, 1, 3]], [1, 1, 0])
    assert all(np.isnan(values[2]) for values in metrics.values()), "user 2 has no truth"


def test_means_at_3() -> None:
    # means over users 0, 1 and 3
    assert precision_at_k(RECOMMENDED, TRUTH, 3) == pytest.approx((1 / 3 + 1 / 3 + 0) / 3)  # 0.2222
    assert recall_at_k(RECOMMENDED, TRUTH, 3) == pytest.approx((1 / 2 + 1 + 0) / 3)  # 0.5
    ndcg_user_0 = 0.6309298 / 1.6309298  # 0.3869
    assert ndcg_at_k(RECOMMENDED, TRUTH, 3) == pytest.approx((ndcg_user_0 + 1 + 0) / 3, rel=1e-6)  # 0.4623
    assert hit_rate_at_k(RECOMMENDED, TRUTH, 3) == pytest.approx(2 / 3)


def test_means_at_1() -> None:
    # only user 1 hits at rank 1: precision 1/1, recall 1/1, NDCG 1/1 for user 1 and 0 for users 0 and 3
    scores = evaluate(RECOMMENDED, TRUTH, ks=(1,))
    assert scores == pytest.approx(
        {
            ("precision", 1): 1 / 3,
            ("recall", 1): 1 / 3,
            ("ndcg", 1): 1 / 3,
            ("hit_rate", 1): 1 / 3,
            ("f1", 1): 1 / 3,  # user 1: 2 * 1 * 1 / (1 + 1) = 1
            ("map", 1): 1 / 3,  # user 1: precision@1 = 1, / min(1, 1)
        }
    )


def test_f1_and_map_at_3() -> None:
    metrics = per_user_metrics(RECOMMENDED, TRUTH, 3)
    # user 0: P 1/3, R 1/2 -> F1 = 2 (1/6) / (5/6) = 0.4; hit at rank 2: AP = (1/2) / min(2, 3) = 0.25
    # user 1: P 1/3, R 1 -> F1 = 2 (1/3) / (4/3) = 0.5; hit at rank 1: AP = 1 / min(1, 3) = 1
    # user 3: no hit -> 0 and 0
    np.testing.assert_allclose(metrics["f1"][[0, 1, 3]], [0.4, 0.5, 0])
    np.testing.assert_allclose(metrics["map"][[0, 1, 3]], [0.25, 1, 0])
    assert np.isnan(metrics["f1"][2]) and np.isnan(metrics["map"][2])
    assert f1_at_k(RECOMMENDED, TRUTH, 3) == pytest.approx((0.4 + 0.5 + 0) / 3)  # 0.3
    assert map_at_k(RECOMMENDED, TRUTH, 3) == pytest.approx((0.25 + 1 + 0) / 3)  # 0.4167


def test_map_rewards_early_hits() -> None:
    # relevant {0, 1, 2}, k = 4: hits at ranks 1 and 3 -> AP = (1/1 + 2/3) / min(3, 4) = 0.5556
    truth = sp.csr_array((np.ones(3), ([0, 0, 0], [0, 1, 2])), shape=(1, 6))
    assert map_at_k(np.array([[0, 5, 1, 4]]), truth, 4) == pytest.approx((1 + 2 / 3) / 3)
    # the same two hits at ranks 3 and 4: AP = (1/3 + 2/4) / 3 = 0.2778; F1 is blind to the order
    assert map_at_k(np.array([[5, 4, 0, 1]]), truth, 4) == pytest.approx((1 / 3 + 2 / 4) / 3)
    # F1: P = 2/4, R = 2/3 -> 2 (1/3) / (7/6) = 4/7
    assert f1_at_k(np.array([[5, 4, 0, 1]]), truth, 4) == pytest.approx(4 / 7)


def test_ideal_dcg_is_capped_at_k() -> None:
    # 5 relevant items, k = 2, both recommended items relevant: DCG = IDCG = 1 + 1/log2(3) -> NDCG 1
    truth = sp.csr_array((np.ones(5), ([0] * 5, [0, 1, 2, 3, 4])), shape=(1, 5))
    assert ndcg_at_k(np.array([[3, 1]]), truth, 2) == pytest.approx(1.0)
    # recall is still 2 of 5
    assert recall_at_k(np.array([[3, 1]]), truth, 2) == pytest.approx(0.4)
    # the hit at rank 2 only: DCG = 1/log2(3) = 0.6309, IDCG = 1.6309 -> 0.3869
    assert ndcg_at_k(np.array([[7, 1]]), sp.csr_array(truth, shape=(1, 8)), 2) == pytest.approx(0.6309298 / 1.6309298)


def test_duplicate_truth_entries_count_once() -> None:
    truth = sp.csr_array((np.array([2.0]), ([0], [1])), shape=(1, 3))  # item 1 bought twice
    assert recall_at_k(np.array([[1, 0]]), truth, 2) == 1.0


def test_catalogue_coverage() -> None:
    # top 3: {2, 5, 7, 1, 0, 4, 3, 6} = 8 distinct of 10 items; top 1: {2, 1, 4, 3} = 4 of 10
    assert catalogue_coverage(RECOMMENDED, 10) == pytest.approx(0.8)
    assert catalogue_coverage(RECOMMENDED, 10, k=1) == pytest.approx(0.4)
    assert catalogue_coverage(np.empty((0, 3), dtype=int), 0) == 0.0


def test_no_truth_at_all_gives_nan() -> None:
    empty = sp.csr_array((2, 5))
    assert math.isnan(ndcg_at_k(np.array([[0, 1], [2, 3]]), empty, 2))


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="k="):
        precision_at_k(RECOMMENDED, TRUTH, 4)
    with pytest.raises(ValueError, match="rows"):
        precision_at_k(RECOMMENDED[:2], TRUTH, 2)
