"""Top-k ranking metrics, computed for all users at once.

Inputs everywhere: ``recommended``, an int ``(n_users, width)`` array of item
indices, best first (``-1`` = no item, never a hit), and ``truth``, a sparse
``(n_users, n_truth_items)`` matrix whose stored non-zero entries are the
relevant items of each row (binary relevance). Truth may have more columns
than the model knew items (items first seen in the test window): those are
relevant but can never be recommended, so they only lower recall and NDCG.

Means are taken over the users with at least one relevant item.

Beyond accuracy: :func:`intra_list_diversity` (item categories) and
:func:`novelty` (item popularity) need no truth. For predicted ratings or
scored pairs: :func:`rmse`, :func:`mae` and :func:`roc_auc`.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
from sklearn.metrics import roc_auc_score

from recsys.features.interactions import lookup

logger = logging.getLogger(__name__)

#: metric names in the order they are reported
METRICS: tuple[str, ...] = ("precision", "recall", "ndcg", "hit_rate", "f1", "map")


def _check(recommended: np.ndarray, truth: sp.csr_array, k: int) -> tuple[np.ndarray, sp.csr_array]:
    recommended = np.asarray(recommended)
    if recommended.ndim != 2:
        raise ValueError("recommended must be a 2-D (n_users, width) array")
    truth = sp.csr_array(truth)
    if truth.shape[0] != recommended.shape[0]:
        raise ValueError(f"truth has {truth.shape[0]} rows, recommended {recommended.shape[0]}")
    if not 1 <= k <= recommended.shape[1]:
        raise ValueError(f"k={k} must be between 1 and the {recommended.shape[1]} recommended columns")
    return recommended, truth


def hit_matrix(recommended: np.ndarray, truth: sp.csr_array) -> np.ndarray:
    """Which recommended items are relevant.

    Parameters
    ----------
    recommended : numpy.ndarray
        Int ``(n_users, width)`` item indices, ``-1`` for none.
    truth : scipy.sparse.csr_array
        ``(n_users, n_truth_items)`` relevant items.

    Returns
    -------
    numpy.ndarray
        Bool ``(n_users, width)``.
    """
    recommended, truth = _check(recommended, truth, 1)
    rows = np.repeat(np.arange(recommended.shape[0]), recommended.shape[1])
    items = recommended.ravel()
    valid = (items >= 0) & (items < truth.shape[1])
    hits = np.zeros(items.shape, dtype=bool)
    hits[valid] = lookup(truth, rows[valid], items[valid]) != 0
    return hits.reshape(recommended.shape)


def relevant_counts(truth: sp.csr_array) -> np.ndarray:
    """Number of relevant items per user (stored non-zero entries per row)."""
    truth = sp.csr_array(truth)
    truth.sum_duplicates()
    return np.diff(sp.csr_array(truth != 0).indptr)


def per_user_metrics(recommended: np.ndarray, truth: sp.csr_array, k: int) -> dict[str, np.ndarray]:
    """Precision, recall, NDCG, hit rate, F1 and average precision at ``k`` for every user.

    * precision@k = hits in the top k / k
    * recall@k = hits in the top k / number of relevant items
    * NDCG@k = DCG / IDCG with DCG = sum over hits at 0-based rank r of
      1 / log2(r + 2) and IDCG the DCG of min(relevant, k) hits at the top
    * hit rate@k = 1 if any hit in the top k
    * F1@k = 2 precision recall / (precision + recall), 0 without hits
    * AP@k (``map``; its mean is MAP@k) = sum over hits at 1-based rank r of
      precision@r, divided by min(relevant, k)

    Parameters
    ----------
    recommended : numpy.ndarray
        Int ``(n_users, width)`` with ``width >= k``.
    truth : scipy.sparse.csr_array
        ``(n_users, n_truth_items)`` relevant items.
    k : int
        Cut-off.

    Returns
    -------
    dict of str to numpy.ndarray
        Float64 array per metric name in :data:`METRICS`; ``nan`` for users
        without relevant items.
    """
    recommended, truth = _check(recommended, truth, k)
    hits = hit_matrix(recommended[:, :k], truth)
    n_relevant = relevant_counts(truth)
    has_truth = n_relevant > 0
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])  # ideal[m] = best DCG with m hits
    n_hits = hits.sum(axis=1)
    precision_at_rank = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision, recall = n_hits / k, n_hits / n_relevant
        result = {
            "precision": precision,
            "recall": recall,
            "ndcg": (hits * discounts).sum(axis=1) / ideal[np.minimum(n_relevant, k)],
            "hit_rate": (n_hits > 0).astype(np.float64),
            "f1": np.where(n_hits > 0, 2 * precision * recall / (precision + recall), 0.0),
            "map": (hits * precision_at_rank).sum(axis=1) / np.minimum(n_relevant, k),
        }
    return {name: np.where(has_truth, values, np.nan) for name, values in result.items()}


def evaluate(
    recommended: np.ndarray, truth: sp.csr_array, ks: tuple[int, ...] = (5, 10, 20)
) -> dict[tuple[str, int], float]:
    """Mean metrics at several cut-offs.

    Parameters
    ----------
    recommended : numpy.ndarray
        Int ``(n_users, width)`` with ``width >= max(ks)``.
    truth : scipy.sparse.csr_array
        ``(n_users, n_truth_items)`` relevant items.
    ks : tuple of int
        Cut-offs.

    Returns
    -------
    dict
        ``{(metric, k): mean over users with relevant items}``; ``nan`` if
        no user has any.
    """
    scores: dict[tuple[str, int], float] = {}
    for k in ks:  # a handful of cut-offs, each fully vectorized over users
        for name, values in per_user_metrics(recommended, truth, k).items():
            scores[(name, k)] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    return scores


def precision_at_k(recommended: np.ndarray, truth: sp.csr_array, k: int) -> float:
    """Mean precision@k over users with relevant items; see :func:`per_user_metrics`."""
    return evaluate(recommended, truth, (k,))[("precision", k)]


def recall_at_k(recommended: np.ndarray, truth: sp.csr_array, k: int) -> float:
    """Mean recall@k over users with relevant items; see :func:`per_user_metrics`."""
    return evaluate(recommended, truth, (k,))[("recall", k)]


def ndcg_at_k(recommended: np.ndarray, truth: sp.csr_array, k: int) -> float:
    """Mean NDCG@k (binary relevance) over users with relevant items; see :func:`per_user_metrics`."""
    return evaluate(recommended, truth, (k,))[("ndcg", k)]


def hit_rate_at_k(recommended: np.ndarray, truth: sp.csr_array, k: int) -> float:
    """Share of users with relevant items who got at least one in the top k."""
    return evaluate(recommended, truth, (k,))[("hit_rate", k)]


def f1_at_k(recommended: np.ndarray, truth: sp.csr_array, k: int) -> float:
    """Mean per-user F1@k over users with relevant items; see :func:`per_user_metrics`."""
    return evaluate(recommended, truth, (k,))[("f1", k)]


def map_at_k(recommended: np.ndarray, truth: sp.csr_array, k: int) -> float:
    """MAP@k: mean average precision at k over users with relevant items; see :func:`per_user_metrics`."""
    return evaluate(recommended, truth, (k,))[("map", k)]


def catalogue_coverage(recommended: np.ndarray, n_items: int, k: int | None = None) -> float:
    """Share of the catalogue that appears in anyone's top k.

    Parameters
    ----------
    recommended : numpy.ndarray
        Int ``(n_users, width)`` item indices, ``-1`` ignored.
    n_items : int
        Catalogue size.
    k : int, optional
        Cut-off; default the full width.

    Returns
    -------
    float
        ``distinct recommended items / n_items`` (0 for an empty catalogue).
    """
    recommended = np.asarray(recommended)
    top = recommended if k is None else recommended[:, :k]
    distinct = np.unique(top[top >= 0])
    return float(len(distinct) / n_items) if n_items else 0.0


def item_set_coverage(recommended: np.ndarray, items: np.ndarray, k: int | None = None) -> float:
    """Share of ``items`` (for example the new catalogue items) that appear in anyone's top k.

    Parameters
    ----------
    recommended : numpy.ndarray
        Int ``(n_users, width)`` item indices, ``-1`` ignored.
    items : numpy.ndarray
        Int item indices of the set, without duplicates.
    k : int, optional
        Cut-off; default the full width.

    Returns
    -------
    float
        ``|items listed| / |items|``; ``nan`` for an empty set.
    """
    recommended = np.asarray(recommended)
    top = recommended if k is None else recommended[:, :k]
    if len(items) == 0:
        return float("nan")
    return float(np.isin(np.asarray(items), top[top >= 0]).mean())


def _top_k(recommended: np.ndarray, k: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` columns and their validity mask; items must index an array of ``n_items``."""
    recommended = np.asarray(recommended)
    if recommended.ndim != 2:
        raise ValueError("recommended must be a 2-D (n_users, width) array")
    if not 1 <= k <= recommended.shape[1]:
        raise ValueError(f"k={k} must be between 1 and the {recommended.shape[1]} recommended columns")
    top = recommended[:, :k]
    valid = top >= 0
    if (top[valid] >= n_items).any():
        raise ValueError(f"recommended item indices must be below {n_items}, the length of the per-item array")
    return top, valid


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def per_user_diversity(recommended: np.ndarray, item_categories: np.ndarray, k: int) -> np.ndarray:
    """Intra-list diversity of every user's top ``k``: the share of item pairs in different categories.

    For the ``m`` valid items of a user's top ``k`` there are ``m (m - 1) / 2``
    pairs ``i < j``; diversity is ``1 - same-category pairs / pairs``. Unknown
    categories (``-1``) are one category of their own, "unknown", so two unknown
    items count as a same-category pair. A repeated item pairs with itself as
    the same category.

    Same-category pairs are counted by sorting each row and summing, at every
    position, how many earlier positions hold the same category (so memory
    stays a few ``(n_users, k)`` arrays, without a ``k * k`` cube).

    Parameters
    ----------
    recommended : numpy.ndarray
        Int ``(n_users, width)`` item indices, best first, ``-1`` for none.
    item_categories : numpy.ndarray
        Int category code per item index, ``-1`` = unknown.
    k : int
        Cut-off, ``1 <= k <= width``.

    Returns
    -------
    numpy.ndarray
        Float64 ``(n_users,)`` in ``[0, 1]``; ``nan`` for users with fewer than
        two valid items in the top ``k``.
    """
    item_categories = np.asarray(item_categories, dtype=np.int64)
    top, valid = _top_k(recommended, k, len(item_categories))
    missing = np.iinfo(np.int64).max  # sorts after every real code, including -1
    categories = np.full(top.shape, missing)
    categories[valid] = item_categories[top[valid]]
    categories.sort(axis=1)
    positions = np.broadcast_to(np.arange(k), categories.shape)
    run_starts = np.ones(categories.shape, dtype=bool)
    run_starts[:, 1:] = categories[:, 1:] != categories[:, :-1]
    first_of_run = np.maximum.accumulate(np.where(run_starts, positions, 0), axis=1)
    # a run of c equal codes contributes 0 + 1 + ... + (c - 1) = c (c - 1) / 2 same-category pairs
    same = np.where(categories != missing, positions - first_of_run, 0).sum(axis=1)
    n_valid = valid.sum(axis=1)
    pairs = n_valid * (n_valid - 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_valid >= 2, 1.0 - same / pairs, np.nan)


def intra_list_diversity(recommended: np.ndarray, item_categories: np.ndarray, k: int) -> float:
    """Mean intra-list diversity at ``k`` over users with at least two valid items.

    See :func:`per_user_diversity` for the definition.

    Parameters
    ----------
    recommended : numpy.ndarray
        Int ``(n_users, width)`` item indices, best first, ``-1`` for none.
    item_categories : numpy.ndarray
        Int category code per item index, ``-1`` = unknown (one shared category).
    k : int
        Cut-off.

    Returns
    -------
    float
        Mean share of distinct-category pairs; ``nan`` if no user qualifies.
    """
    return _nanmean(per_user_diversity(recommended, item_categories, k))


def per_user_category_coverage(recommended: np.ndarray, item_categories: np.ndarray, k: int) -> np.ndarray:
    """Distinct categories in every user's top ``k`` (unknown ``-1`` counts as one category).

    Parameters
    ----------
    recommended : numpy.ndarray
        Int ``(n_users, width)`` item indices, best first, ``-1`` for none.
    item_categories : numpy.ndarray
        Int category code per item index, ``-1`` = unknown.
    k : int
        Cut-off.

    Returns
    -------
    numpy.ndarray
        Float64 ``(n_users,)``; ``nan`` for users without a valid item.
    """
    item_categories = np.asarray(item_categories, dtype=np.int64)
    top, valid = _top_k(recommended, k, len(item_categories))
    missing = np.iinfo(np.int64).max
    categories = np.full(top.shape, missing)
    categories[valid] = item_categories[top[valid]]
    categories.sort(axis=1)
    starts = np.ones(categories.shape, dtype=bool)
    starts[:, 1:] = categories[:, 1:] != categories[:, :-1]
    distinct = (starts & (categories != missing)).sum(axis=1).astype(np.float64)
    return np.where(valid.any(axis=1), distinct, np.nan)


def category_coverage(recommended: np.ndarray, item_categories: np.ndarray, k: int) -> float:
    """Mean number of distinct categories per list at ``k`` (see :func:`per_user_category_coverage`)."""
    return _nanmean(per_user_category_coverage(recommended, item_categories, k))


def per_user_novelty(recommended: np.ndarray, item_popularity: np.ndarray, n_users: int, k: int) -> np.ndarray:
    """Mean self-information of every user's valid top-``k`` items.

    An item's self-information is ``-log2(max(p, 1 / n_users))`` with ``p`` the
    share of training users who interacted with it; items nobody (or fewer than
    one user's worth) touched count as one user, so the value is finite and at
    most ``log2(n_users)``.

    Parameters
    ----------
    recommended : numpy.ndarray
        Int ``(n_users, width)`` item indices, best first, ``-1`` for none.
    item_popularity : numpy.ndarray
        Share of training users per item index, in ``[0, 1]``.
    n_users : int
        Number of training users the shares are taken over (not the rows of
        ``recommended``), ``>= 1``.
    k : int
        Cut-off.

    Returns
    -------
    numpy.ndarray
        Float64, one value in bits per row of ``recommended``; ``nan`` for rows
        without a valid item in the top ``k``.
    """
    item_popularity = np.asarray(item_popularity, dtype=np.float64)
    if n_users < 1:
        raise ValueError(f"n_users={n_users} must be at least 1")
    if ((item_popularity < 0) | (item_popularity > 1) | np.isnan(item_popularity)).any():
        raise ValueError("item_popularity must be shares in [0, 1]")
    top, valid = _top_k(recommended, k, len(item_popularity))
    information = -np.log2(np.maximum(item_popularity, 1.0 / n_users))
    per_item = np.zeros(top.shape)
    per_item[valid] = information[top[valid]]
    total = per_item.sum(axis=1)
    n_valid = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_valid > 0, total / n_valid, np.nan)


def novelty(recommended: np.ndarray, item_popularity: np.ndarray, n_users: int, k: int) -> float:
    """Novelty at ``k``: mean over users of the mean self-information of their top-``k`` items.

    See :func:`per_user_novelty`; each user with a valid item weighs the same,
    whatever the number of items they were shown.

    Parameters
    ----------
    recommended : numpy.ndarray
        Int ``(n_users, width)`` item indices, best first, ``-1`` for none.
    item_popularity : numpy.ndarray
        Share of training users per item index, in ``[0, 1]``.
    n_users : int
        Number of training users the shares are taken over (not the rows of
        ``recommended``), ``>= 1``.
    k : int
        Cut-off.

    Returns
    -------
    float
        Bits; ``nan`` if no user has a valid item.
    """
    return _nanmean(per_user_novelty(recommended, item_popularity, n_users, k))


def _prediction_errors(predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    predicted = np.asarray(predicted, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if predicted.ndim != 1 or predicted.shape != actual.shape:
        raise ValueError(f"predicted {predicted.shape} and actual {actual.shape} must be 1-D of the same length")
    kept = ~np.isnan(predicted)
    return predicted[kept] - actual[kept]


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Root mean squared error of predicted against actual ratings.

    Parameters
    ----------
    predicted : numpy.ndarray
        1-D predictions; ``nan`` = no prediction, the pair is left out.
    actual : numpy.ndarray
        1-D actual values, same length.

    Returns
    -------
    float
        ``sqrt(mean((predicted - actual) ** 2))`` over predicted pairs; ``nan``
        if none is left.
    """
    errors = _prediction_errors(predicted, actual)
    return float(np.sqrt(np.mean(errors**2))) if errors.size else float("nan")


def mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Mean absolute error of predicted against actual ratings.

    Parameters
    ----------
    predicted : numpy.ndarray
        1-D predictions; ``nan`` = no prediction, the pair is left out.
    actual : numpy.ndarray
        1-D actual values, same length.

    Returns
    -------
    float
        ``mean(|predicted - actual|)`` over predicted pairs; ``nan`` if none is
        left.
    """
    errors = _prediction_errors(predicted, actual)
    return float(np.mean(np.abs(errors))) if errors.size else float("nan")


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of scored pairs (``sklearn.metrics.roc_auc_score``).

    Parameters
    ----------
    scores : numpy.ndarray
        1-D scores, higher = more likely positive (no ``nan``).
    labels : numpy.ndarray
        1-D labels ``0`` / ``1``, same length.

    Returns
    -------
    float
        Probability that a random positive outscores a random negative (ties
        count half); ``nan`` when only one class (or nothing) is present.
    """
    labels = np.asarray(labels)
    if np.unique(labels).size < 2:
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores)))
