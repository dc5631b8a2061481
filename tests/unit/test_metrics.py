"""Ranking metrics against hand-computed values (the arithmetic is written next to each number)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.evaluation.metrics import (
    catalogue_coverage,
    evaluate,
    f1_at_k,
    hit_matrix,
    hit_rate_at_k,
    intra_list_diversity,
    mae,
    map_at_k,
    ndcg_at_k,
    novelty,
    per_user_diversity,
    per_user_metrics,
    per_user_novelty,
    precision_at_k,
    recall_at_k,
    rmse,
    roc_auc,
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


# items 0..5: categories 0, 0, 1, 1, unknown, unknown (the two unknowns count as one category)
CATEGORIES = np.array([0, 0, 1, 1, -1, -1])
DIVERSE = np.array(
    [
        [0, 1, 2],  # categories 0, 0, 1: 3 pairs, 1 same (0-0) -> 1 - 1/3 = 2/3
        [0, 2, 4],  # 0, 1, unknown: 3 pairs, none same -> 1
        [4, 5, 1],  # unknown, unknown, 0: 1 same (unknown-unknown) -> 2/3
        [3, -1, -1],  # one valid item: no pair -> skipped
        [1, -1, 0],  # 0, 0 around a gap: 1 pair, same -> 0
    ]
)


def test_per_user_diversity_at_3() -> None:
    np.testing.assert_allclose(per_user_diversity(DIVERSE, CATEGORIES, 3), [2 / 3, 1, 2 / 3, np.nan, 0])
    # mean over the four users with two or more items: (2/3 + 1 + 2/3 + 0) / 4 = 7/12
    assert intra_list_diversity(DIVERSE, CATEGORIES, 3) == pytest.approx(7 / 12)


def test_per_user_diversity_at_2() -> None:
    # top 2: {0, 0} -> 0; {0, 1} -> 1; {unknown, unknown} -> 0; one item; one item
    np.testing.assert_allclose(per_user_diversity(DIVERSE, CATEGORIES, 2), [0, 1, 0, np.nan, np.nan])
    assert intra_list_diversity(DIVERSE, CATEGORIES, 2) == pytest.approx(1 / 3)


def test_diversity_counts_runs_of_any_length() -> None:
    # categories 1, 0, 1, 1, 0 (items 2, 0, 3, 2, 1; item 2 twice): 10 pairs, same = 3 (three 1s) + 1 (two 0s) = 4
    assert intra_list_diversity(np.array([[2, 0, 3, 2, 1]]), CATEGORIES, 5) == pytest.approx(1 - 4 / 10)


def test_diversity_matches_pairwise_count() -> None:
    # the run counting against a plain comparison of every pair i < j, on random lists with gaps
    rng = np.random.default_rng(0)
    categories = rng.integers(-1, 4, size=30)
    recommended = rng.integers(-1, 30, size=(200, 8))
    k = 6
    top = recommended[:, :k]
    valid = top >= 0
    codes = categories[top]
    upper = np.triu(np.ones((k, k), dtype=bool), 1)
    both_valid = valid[:, :, None] & valid[:, None, :] & upper
    same = ((codes[:, :, None] == codes[:, None, :]) & both_valid).sum(axis=(1, 2))
    pairs = both_valid.sum(axis=(1, 2))
    expected = np.where(pairs > 0, 1 - same / np.maximum(pairs, 1), np.nan)
    np.testing.assert_allclose(per_user_diversity(recommended, categories, k), expected)


def test_diversity_without_qualifying_users_is_nan() -> None:
    assert math.isnan(intra_list_diversity(np.array([[0, -1], [-1, -1]]), CATEGORIES, 2))
    assert math.isnan(intra_list_diversity(DIVERSE, CATEGORIES, 1))
    assert math.isnan(intra_list_diversity(np.full((2, 2), -1), np.array([], dtype=int), 2))  # empty catalogue


# items 0..4: share of training users 1/2, 1/4, 0 (nobody), 1 (everybody), 0.05; 8 training users
POPULARITY = np.array([0.5, 0.25, 0.0, 1.0, 0.05])
# self-information: -log2(1/2) = 1, -log2(1/4) = 2, item 2 counts as 1 of 8 users -> 3, 0, item 4 also clipped -> 3
NOVEL = np.array(
    [
        [0, 1],  # (1 + 2) / 2 = 1.5
        [2, -1],  # 3 / 1 = 3
        [-1, -1],  # nothing -> nan
        [3, 4],  # (0 + 3) / 2 = 1.5
    ]
)


def test_novelty() -> None:
    np.testing.assert_allclose(per_user_novelty(NOVEL, POPULARITY, 8, 2), [1.5, 3, np.nan, 1.5])
    assert novelty(NOVEL, POPULARITY, 8, 2) == pytest.approx((1.5 + 3 + 1.5) / 3)  # 2
    # top 1: 1, 3, nan, 0 -> 4/3
    assert novelty(NOVEL, POPULARITY, 8, 1) == pytest.approx(4 / 3)
    # with 100 users item 4 keeps its own share: -log2(0.05) = 4.3219; user 3 = (0 + 4.3219) / 2
    assert per_user_novelty(NOVEL, POPULARITY, 100, 2)[3] == pytest.approx(math.log2(20) / 2)
    assert math.isnan(novelty(NOVEL[2:3], POPULARITY, 8, 2))
    assert math.isnan(novelty(np.full((2, 2), -1), np.array([]), 8, 2))  # empty catalogue


def test_rmse_and_mae() -> None:
    # the nan prediction is left out; errors -1, 0, 3 -> RMSE sqrt((1 + 0 + 9) / 3) = 1.8257, MAE 4/3
    predicted = np.array([1.0, 2.0, np.nan, 4.0])
    actual = np.array([2.0, 2.0, 5.0, 1.0])
    assert rmse(predicted, actual) == pytest.approx(math.sqrt(10 / 3))
    assert mae(predicted, actual) == pytest.approx(4 / 3)
    assert math.isnan(rmse(np.array([np.nan]), np.array([1.0])))
    assert math.isnan(mae(np.array([]), np.array([])))
    with pytest.raises(ValueError, match="same length"):
        rmse(predicted, actual[:3])


def test_roc_auc() -> None:
    labels = np.array([0, 0, 1, 1])
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), labels) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), labels) == 0.0
    assert roc_auc(np.array([0.5, 0.5, 0.5, 0.5]), labels) == 0.5  # ties count half
    # positive 0.35 beats negative 0.1 but not 0.4; positive 0.8 beats both -> 3 of 4 pairs
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), labels) == pytest.approx(0.75)
    assert math.isnan(roc_auc(np.array([0.1, 0.9]), np.array([1, 1])))
    assert math.isnan(roc_auc(np.array([]), np.array([])))


def test_beyond_accuracy_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="k="):
        intra_list_diversity(DIVERSE, CATEGORIES, 4)
    with pytest.raises(ValueError, match="below 6"):
        intra_list_diversity(np.array([[0, 6]]), CATEGORIES, 2)
    with pytest.raises(ValueError, match="2-D"):
        novelty(np.array([0, 1]), POPULARITY, 8, 1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        novelty(NOVEL, np.array([0.5, 2.0, 0, 0, 0]), 8, 2)
    with pytest.raises(ValueError, match="n_users"):
        novelty(NOVEL, POPULARITY, 0, 2)
