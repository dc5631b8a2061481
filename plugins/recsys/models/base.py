"""The recommender contract and the shared top-n helpers every model uses.

Every recommender follows one contract (checked by one shared test,
``tests/unit/test_recommenders.py``):

* ``fit(interactions, reference_time)`` learns from the events at or before
  ``reference_time`` and returns ``self``; learned attributes end in ``_``.
* ``recommend(user_indices, user_items=None, n=10, ...)`` returns
  ``(items, scores)``, two ``(len(user_indices), n)`` arrays (int64 item
  indices, float64 scores), best first, no duplicates in a row, for all users
  at once. A position is ``-1`` (score ``nan``) only when the catalogue left
  after exclusions has fewer than ``n`` items. ``exclude_seen`` drops the
  user's history (default: off for every model: re-buys are strong signals);
  ``filter_items`` are never recommended (for example out of stock).
* ``user_items`` follows ``implicit``'s convention: one CSR row per user in
  ``user_indices`` (the user's history); ``None`` uses the history the model
  was fitted on.

All scoring is sparse matrix algebra plus a vectorized per-row top-n
(:func:`top_n_per_row` for sparse scores, :func:`top_n_dense` for dense
blocks): there are no Python loops over users or items (models only loop over
blocks of users, to bound memory).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator

from recsys.features.interactions import Interactions, Timestamp, to_epoch_seconds

# --------------------------------------------------------------------------- sparse top-n helpers


def _nth_largest_per_row(scores: sp.csr_array, n: int) -> np.ndarray:
    """The ``n``-th largest stored value of every row (``-inf`` for rows with at most ``n`` entries).

    Rows are grouped by length into power-of-two buckets; each bucket is padded
    into a small dense block and partitioned along its rows, so the work is
    linear in the stored entries (the loop runs over at most ~20 buckets).
    """
    counts = np.diff(scores.indptr)
    threshold = np.full(scores.shape[0], -np.inf)
    long_rows = np.flatnonzero(counts > n)
    if len(long_rows) == 0:
        return threshold
    if n == 1:  # the row maximum; reduceat needs consecutive starts, so take every non-empty row
        nonempty = np.flatnonzero(counts > 0)
        threshold[nonempty] = np.maximum.reduceat(scores.data, scores.indptr[nonempty])
        return threshold
    bucket = np.ceil(np.log2(counts[long_rows])).astype(np.int64)
    for size in np.unique(bucket):  # length buckets, not rows
        rows = long_rows[bucket == size]
        lengths = counts[rows].astype(np.int64)
        width = int(lengths.max())
        block_rows = np.repeat(np.arange(len(rows)), lengths)
        position = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        block = np.full((len(rows), width), -np.inf)
        block[block_rows, position] = scores.data[np.repeat(scores.indptr[rows], lengths) + position]
        threshold[rows] = np.partition(block, width - n, axis=1)[:, width - n]
    return threshold


def top_n_per_row(scores: sp.csr_array, n: int, unique: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Top ``n`` stored entries of every row of a sparse matrix.

    Rows are ranked by value (descending), ties by column index (ascending).
    Entries below each row's ``n``-th largest value are dropped first (a
    per-row partition), then the few survivors are ordered with one
    ``np.lexsort``. The column order inside a row does not matter.

    Parameters
    ----------
    scores : scipy.sparse.csr_array
        Candidate scores; only stored entries are candidates.
    n : int
        Number of entries per row.
    unique : bool, default False
        The caller guarantees no repeated (row, column) entry, as in the result of a sparse
        product: the duplicates are not summed, which skips sorting every row's columns.

    Returns
    -------
    items : numpy.ndarray
        Int64 ``(n_rows, n)`` column indices, ``-1`` where a row has fewer
        than ``n`` stored entries.
    values : numpy.ndarray
        Float64 ``(n_rows, n)`` values, ``nan`` where ``items`` is ``-1``.
    """
    scores = sp.csr_array(scores)
    if not unique:
        scores.sum_duplicates()
    n_rows = scores.shape[0]
    items = np.full((n_rows, n), -1, dtype=np.int64)
    values = np.full((n_rows, n), np.nan, dtype=np.float64)
    if scores.nnz == 0 or n == 0:
        return items, values
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(scores.indptr))
    candidate = scores.data >= _nth_largest_per_row(scores, n)[rows]  # keeps ties at the boundary
    rows, cols, data = rows[candidate], scores.indices[candidate], scores.data[candidate]
    order = np.lexsort((cols, -data, rows))  # rows stay grouped: rows[order] == rows
    position = np.arange(len(rows), dtype=np.int64) - np.searchsorted(rows, rows, side="left")
    keep = position < n
    items[rows[keep], position[keep]] = cols[order][keep]
    values[rows[keep], position[keep]] = data[order][keep]
    return items, values


def _flat_keys(matrix: sp.csr_array) -> np.ndarray:
    """Sorted ``row * n_cols + col`` keys of the stored entries of a canonical CSR matrix."""
    rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    return rows * np.int64(matrix.shape[1]) + matrix.indices


def _is_stored(keys: np.ndarray, stored_keys: np.ndarray) -> np.ndarray:
    """Boolean mask: which ``keys`` are in the sorted array ``stored_keys``."""
    if len(stored_keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    position = np.minimum(np.searchsorted(stored_keys, keys), len(stored_keys) - 1)
    return stored_keys[position] == keys


def _pattern(items: np.ndarray, n_items: int) -> sp.csr_array:
    """A ``(n_rows, n_items)`` 0/1 matrix with a 1 at every non-negative entry of ``items``."""
    rows, cols = np.nonzero(items >= 0)
    return sp.csr_array(
        (np.ones(len(rows), dtype=np.float32), (rows, items[rows, cols])), shape=(items.shape[0], n_items)
    )


def first_unexcluded(ranking: np.ndarray, exclude: sp.csr_array, n: int) -> np.ndarray:
    """For every row, the first ``n`` items of a global ranking that the row does not exclude.

    Row ``u`` only needs the first ``n + nnz(exclude[u])`` ranked items, so the
    candidates are built as one ragged array of ``n * n_rows + nnz(exclude)``
    entries and filtered with one sorted-key membership test.

    Parameters
    ----------
    ranking : numpy.ndarray
        Item indices, best first, without duplicates.
    exclude : scipy.sparse.csr_array
        ``(n_rows, n_items)``; stored entries are excluded.
    n : int
        Items per row.

    Returns
    -------
    numpy.ndarray
        Int64 ``(n_rows, n)``, ``-1`` where the ranking runs out.
    """
    exclude = sp.csr_array(exclude)
    exclude.sum_duplicates()
    n_rows = exclude.shape[0]
    out = np.full((n_rows, n), -1, dtype=np.int64)
    if len(ranking) == 0 or n == 0 or n_rows == 0:
        return out
    lengths = np.minimum(n + np.diff(exclude.indptr), len(ranking)).astype(np.int64)
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), lengths)
    starts = np.cumsum(lengths) - lengths
    candidates = ranking[np.arange(len(rows), dtype=np.int64) - starts[rows]]
    keep = ~_is_stored(rows * np.int64(exclude.shape[1]) + candidates, _flat_keys(exclude))
    kept_rows, kept_items = rows[keep], candidates[keep]
    position = np.arange(len(kept_rows), dtype=np.int64) - np.searchsorted(kept_rows, kept_rows, side="left")
    room = position < n
    out[kept_rows[room], position[room]] = kept_items[room]
    return out


def fill_from_ranking(
    items: np.ndarray,
    scores: np.ndarray,
    ranking: np.ndarray,
    n_items: int,
    exclude: sp.csr_array | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fill the trailing ``-1`` positions of each row from a global ranking.

    Filled items are not in the row yet and not in ``exclude``; they get
    score ``0.0`` (they had no evidence from the primary model).

    Parameters
    ----------
    items, scores : numpy.ndarray
        ``(n_rows, n)`` output of :func:`top_n_per_row` (valid items first).
    ranking : numpy.ndarray
        Fallback item order, best first.
    n_items : int
        Catalogue size (columns of ``exclude``).
    exclude : scipy.sparse.csr_array, optional
        ``(n_rows, n_items)`` items never to add (for example the history).

    Returns
    -------
    items, scores : numpy.ndarray
        New arrays with the gaps filled where the ranking allows.
    """
    items, scores = items.copy(), scores.copy()
    n = items.shape[1]
    counts = (items >= 0).sum(axis=1)
    need = np.flatnonzero(counts < n)
    if len(need) == 0 or len(ranking) == 0:
        return items, scores
    blocked = _pattern(items[need], n_items)
    if exclude is not None:
        blocked = blocked + sp.csr_array(exclude)[need]
    fill = first_unexcluded(ranking, blocked, n)
    offset = np.arange(n)[None, :] - counts[need][:, None]  # position in the fill list, < 0 = keep own item
    take_rows, take_cols = np.nonzero(offset >= 0)
    filled = fill[take_rows, offset[take_rows, take_cols]]
    items[need[take_rows], take_cols] = filled
    scores[need[take_rows], take_cols] = np.where(filled >= 0, 0.0, np.nan)
    return items, scores


def top_n_dense(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``n`` columns of every row of a dense block by value (``np.argpartition``), selected ties by column index.

    ``-inf`` entries are never returned: a row with fewer finite values is
    padded with ``-1`` (value ``nan``).
    """
    n_rows, n_cols = scores.shape
    items = np.full((n_rows, n), -1, dtype=np.int64)
    values = np.full((n_rows, n), np.nan)
    width = min(n, n_cols)
    if width == 0 or n_rows == 0:
        return items, values
    if width < n_cols:
        top = np.argpartition(-scores, width - 1, axis=1)[:, :width]
    else:
        top = np.broadcast_to(np.arange(n_cols), scores.shape)
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.lexsort((top, -top_scores), axis=1)
    top, top_scores = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)
    valid = np.isfinite(top_scores)
    items[:, :width] = np.where(valid, top, -1)
    values[:, :width] = np.where(valid, top_scores, np.nan)
    return items, values


# --------------------------------------------------------------------------- the models


class Recommender(BaseEstimator, ABC):
    """Base class of the recommenders (scikit-learn style parameters, ``clone``-able).

    Subclasses set :attr:`name` and implement :meth:`fit` and :meth:`recommend`.
    """

    #: short model name written to the ``ml`` tables
    name: str = "base"

    @abstractmethod
    def fit(self, interactions: Interactions, reference_time: Timestamp | None = None) -> Self:
        """Learn from the events at or before ``reference_time`` (default: the last event)."""

    @abstractmethod
    def recommend(
        self,
        user_indices: np.ndarray,
        user_items: sp.csr_array | None = None,
        n: int = 10,
        exclude_seen: bool = False,
        filter_items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items for every user in ``user_indices``; see the module docstring.

        Each model chooses its own ``exclude_seen`` default.
        """

    # shared plumbing ---------------------------------------------------------

    @staticmethod
    def _reference(interactions: Interactions, reference_time: Timestamp | None) -> float:
        if reference_time is not None:
            return to_epoch_seconds(reference_time)
        return float(interactions.event_ts.max()) if interactions.n_events else 0.0

    def _history(self, user_indices: np.ndarray, user_items: sp.csr_array | None) -> sp.csr_array:
        """History rows of the batch, canonical CSR."""
        if user_items is None:
            if np.any(user_indices >= self.user_items_.shape[0]) or np.any(user_indices < 0):
                raise IndexError("user index out of range of the fitted users")
            history = self.user_items_[user_indices]
        else:
            history = sp.csr_array(user_items)
            if history.shape != (len(user_indices), self.n_items_):
                raise ValueError(
                    f"user_items must have one row per user and {self.n_items_} columns, got {history.shape}"
                )
        history = sp.csr_array(history)
        history.sum_duplicates()
        return history

    def _blocked(self, filter_items: np.ndarray | None) -> np.ndarray:
        """Boolean mask over the catalogue of items never to recommend."""
        blocked = np.zeros(self.n_items_, dtype=bool)
        if filter_items is not None:
            blocked[np.asarray(filter_items, dtype=np.int64)] = True
        return blocked
