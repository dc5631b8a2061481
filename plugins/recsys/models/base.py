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

``recommend`` is written once, in :class:`Recommender` (a template method):
a model implements :meth:`Recommender._score_batch`, the scores of a block of
users, and the template does the rest. All scoring is sparse matrix algebra
plus a vectorized per-row top-n (:func:`top_n_per_row` for sparse scores,
:func:`top_n_dense` for dense blocks): there are no Python loops over users
or items (the template only loops over blocks of users, to bound memory).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Self

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


@dataclass(frozen=True)
class ScoreBatch:
    """One block of users a model scores inside :meth:`Recommender.recommend`.

    Attributes
    ----------
    users : numpy.ndarray
        Int64 user indices of the block.
    history : scipy.sparse.csr_array
        Their history rows (canonical CSR): ``user_items`` when given, else the fitted history.
    history_given : bool
        ``user_items`` was passed (not the fitted history).
    items : numpy.ndarray or None
        The catalogue columns of a dense score block (:meth:`Recommender._candidate_items`); ``None``: all.
    filter_items : numpy.ndarray or None
        The ``filter_items`` of the call (the template also blocks them after scoring).
    """

    users: np.ndarray
    history: sp.csr_array
    history_given: bool
    items: np.ndarray | None
    filter_items: np.ndarray | None


class Recommender(BaseEstimator, ABC):
    """Base class of the recommenders (scikit-learn style parameters, ``clone``-able).

    Subclasses set :attr:`name` and implement :meth:`fit` and :meth:`_score_batch`;
    :meth:`recommend` is written once here (a template): validate the users, read
    their history, score blocks of users, drop ``filter_items`` (and with
    ``exclude_seen`` the history), take the top ``n`` (:func:`top_n_dense` or
    :func:`top_n_per_row`: by score, ties by item index) and fill short lists from
    the fitted popularity fallback ``fallback_`` (score ``0.0``). The other hooks
    have defaults: one block of every user, the whole catalogue, the scores as
    ranked. A model whose lists are not per-user scores overrides :meth:`recommend`.
    """

    #: short model name written to the ``ml`` tables
    name: str = "base"
    #: scores come from per-user state learned in ``fit`` (factors, purchases, follows), as ``implicit``'s
    #: ``recalculate_user=False``: ``user_items`` rows cannot stand in for an unknown user
    fitted_users_only: ClassVar[bool] = False

    @abstractmethod
    def fit(self, interactions: Interactions, reference_time: Timestamp | None = None) -> Self:
        """Learn from the events at or before ``reference_time`` (default: the last event)."""

    def recommend(
        self,
        user_indices: np.ndarray,
        user_items: sp.csr_array | None = None,
        n: int = 10,
        exclude_seen: bool = False,
        filter_items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items for every user in ``user_indices``, filled from popularity.

        Seen items stay candidates by default: in e-commerce, items a user viewed
        or carted but did not buy, and re-bought consumables, are among the
        strongest predictions.

        Parameters
        ----------
        user_indices : numpy.ndarray
            Users to recommend for (fitted users for a model with :attr:`fitted_users_only`).
        user_items : scipy.sparse.csr_array, optional
            Their history rows, one per user (``implicit``'s convention); default: the fitted
            history. A model with :attr:`fitted_users_only` reads them only for ``exclude_seen``
            (and, where said, to tell users without history).
        n : int, default 10
            Items per user.
        exclude_seen : bool, default False
            Skip items the user already interacted with.
        filter_items : numpy.ndarray, optional
            Item indices never to recommend (for example out of stock).

        Returns
        -------
        items, scores : numpy.ndarray
            ``(len(user_indices), n)`` int64 items and float64 scores: the model's
            items by score (ties by item index), then the popularity fill with score
            ``0.0``; ``-1``/``nan`` only where the catalogue left runs out.

        Raises
        ------
        ValueError
            If ``user_items`` does not have one row per user and a column per item.
        IndexError
            If a user is outside the fitted ones (where the model needs them).
        """
        users = np.asarray(user_indices, dtype=np.int64)
        history = self._history(users, user_items)
        if self.fitted_users_only:
            self._check_users(users)
        blocked = self._blocked(filter_items)
        candidates = self._candidate_items(filter_items)
        items = np.full((len(users), n), -1, dtype=np.int64)
        values = np.full((len(users), n), np.nan)
        scored = self._scored_rows(users, history)
        step = self._rows_per_batch(self.n_items_ if candidates is None else len(candidates))
        step = max(len(scored), 1) if step is None else step
        everyone = len(scored) == len(users)  # then row slices: no copy of the users' history
        for start in range(0, len(scored), step):  # blocks of users bound the score matrix
            rows = slice(start, start + step) if everyone else scored[start : start + step]
            batch = ScoreBatch(users[rows], history[rows], user_items is not None, candidates, filter_items)
            items[rows], values[rows] = self._top_n(self._score_batch(batch), batch, blocked, n, exclude_seen)
        return fill_from_ranking(
            items, values, self.fallback_.ranking(filter_items), self.n_items_, history if exclude_seen else None
        )

    def _top_n(
        self, scores: np.ndarray | sp.csr_array, batch: ScoreBatch, blocked: np.ndarray, n: int, exclude_seen: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` of one score block without the blocked (and with ``exclude_seen`` the seen) items."""
        if sp.issparse(scores):  # stored entries are the candidates: a dropped one is set to 0 and removed
            if exclude_seen:  # subtract the scores of seen items (two linear sparse merges)
                scores = sp.csr_array(scores - scores.multiply(batch.history != 0))
            scores.data[blocked[scores.indices]] = 0.0
            scores.eliminate_zeros()
            return top_n_per_row(scores, n, unique=True)
        columns = np.arange(self.n_items_) if batch.items is None else batch.items
        scores[:, blocked[columns]] = -np.inf
        if exclude_seen:
            position = np.full(self.n_items_, -1, dtype=np.int64)
            position[columns] = np.arange(len(columns))
            seen_rows = np.repeat(np.arange(len(batch.users)), np.diff(batch.history.indptr))
            seen_columns = position[batch.history.indices]
            scores[seen_rows[seen_columns >= 0], seen_columns[seen_columns >= 0]] = -np.inf
        top, top_scores = top_n_dense(scores, n)
        if batch.items is not None:
            top = np.where(top >= 0, batch.items[np.maximum(top, 0)], -1)
        return top, self._served_scores(top_scores)

    # hooks of the template ----------------------------------------------------

    def _score_batch(self, batch: ScoreBatch) -> np.ndarray | sp.csr_array:
        """Scores of a block of users, higher is better: a new array the template may change in place.

        Either a dense float64 ``(len(batch.users), len(columns))`` block over ``batch.items``
        (all items when ``None``), ``-inf`` where an item is no candidate; or a sparse
        ``(len(batch.users), n_items)`` CSR array whose stored positive entries are the
        candidates, without repeated (row, column) entries.
        """
        raise NotImplementedError(f"{type(self).__name__} scores nothing: implement _score_batch or recommend")

    def _rows_per_batch(self, n_columns: int) -> int | None:
        """Users per score block of ``n_columns`` items (bounds memory); ``None``: all users in one block."""
        return None

    def _scored_rows(self, users: np.ndarray, history: sp.csr_array) -> np.ndarray:
        """Ascending positions in ``users`` of the users the model scores (the others get only the fill): all."""
        return np.arange(len(users))

    def _candidate_items(self, filter_items: np.ndarray | None) -> np.ndarray | None:
        """The items a dense score block covers (its columns); ``None``: the whole catalogue."""
        return None

    def _served_scores(self, ranked: np.ndarray) -> np.ndarray:
        """The scores served for the top-``n`` values of a dense block (default: the values themselves)."""
        return ranked

    # shared plumbing ---------------------------------------------------------

    @staticmethod
    def _reference(interactions: Interactions, reference_time: Timestamp | None) -> float:
        if reference_time is not None:
            return to_epoch_seconds(reference_time)
        return float(interactions.event_ts.max()) if interactions.n_events else 0.0

    def _check_users(self, user_indices: np.ndarray, n_users: int | None = None) -> None:
        """Raise ``IndexError`` unless every user is one of the ``n_users`` (default ``n_users_``) fitted ones."""
        n_users = self.n_users_ if n_users is None else n_users
        if np.any(user_indices >= n_users) or np.any(user_indices < 0):
            raise IndexError("user index out of range of the fitted users")

    def _history(self, user_indices: np.ndarray, user_items: sp.csr_array | None) -> sp.csr_array:
        """History rows of the batch, canonical CSR."""
        if user_items is None:
            self._check_users(user_indices, self.user_items_.shape[0])
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
