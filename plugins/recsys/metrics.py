"""Top-k ranking metrics, computed for all users at once.

Inputs everywhere: ``recommended``, an int ``(n_users, width)`` array of item
indices, best first (``-1`` = no item, never a hit), and ``truth``, a sparse
``(n_users, n_truth_items)`` matrix whose stored non-zero entries are the
relevant items of each row (binary relevance). Truth may have more columns
than the model knew items (items first seen in the test window): those are
relevant but can never be recommended, so they only lower recall and NDCG.

Means are taken over the users with at least one relevant item.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from recsys.interactions import lookup

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
