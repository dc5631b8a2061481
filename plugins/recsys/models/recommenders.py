"""Recommenders: popularity, buy-again, item- and user-based collaborative filtering, ALS, rating SVD.

Every recommender follows one contract (checked by one shared test):

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
(:func:`top_n_per_row`): there are no Python loops over users or items
(user-KNN, ALS and SVD only loop over blocks of users, to bound memory; SVD's
training loops over epochs and mini-batches of ratings).
"""

from __future__ import annotations

import logging
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from implicit.nearest_neighbours import CosineRecommender
from implicit.utils import ParameterWarning
from sklearn.base import BaseEstimator, clone
from threadpoolctl import threadpool_limits

from recsys.features.interactions import (
    SECONDS_PER_DAY,
    Interactions,
    Timestamp,
    lookup,
    to_epoch_seconds,
    weight_vector,
)

logger = logging.getLogger(__name__)


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


class PopularityRecommender(Recommender):
    """Time-decayed, purchase-weighted item popularity.

    An item's score is the sum of its event weights (purchases weigh most)
    over the last ``window_days`` before the reference time, optionally
    decayed with a half-life. Ties (including items with no events in the
    window) are broken by all-time weight, then by item index.

    Parameters
    ----------
    window_days : float or None, default 30
        Popularity window; ``None`` uses all history.
    half_life_days : float, optional
        Exponential time decay inside the window.
    event_weights : mapping of str to float, optional
        Weight per event type; defaults to
        :data:`recsys.features.interactions.EVENT_WEIGHTS` (view 1, cart 3, purchase 5).
    random_state : int, optional
        Accepted for a uniform interface; the model is deterministic.

    Attributes
    ----------
    item_scores_ : numpy.ndarray
        Float64 popularity score per item.
    ranking_ : numpy.ndarray
        Int64 item indices, most popular first (the whole catalogue).
    window_user_items_ : scipy.sparse.csr_array
        Decayed user x item weights inside the window (for segment popularity).
    user_items_ : scipy.sparse.csr_array
        The users' full history (for ``exclude_seen``).
    reference_time_ : float
        The "now" of the fit, epoch seconds.
    n_users_, n_items_ : int
        Shape of the fitted data.
    """

    name = "popularity"

    def __init__(
        self,
        window_days: float | None = 30.0,
        half_life_days: float | None = None,
        event_weights: Mapping[str, float] | None = None,
        random_state: int | None = None,
    ) -> None:
        self.window_days = window_days
        self.half_life_days = half_life_days
        self.event_weights = event_weights
        self.random_state = random_state

    def fit(self, interactions: Interactions, reference_time: Timestamp | None = None) -> Self:
        """Compute the popularity scores.

        Parameters
        ----------
        interactions : Interactions
            Encoded events; only those at or before ``reference_time`` count.
        reference_time : timestamp, optional
            End of the window and "now" of the decay; defaults to the last event.

        Returns
        -------
        PopularityRecommender
            ``self``.
        """
        reference = self._reference(interactions, reference_time)
        until = np.nextafter(reference, np.inf)  # the window includes the reference instant
        since = None if self.window_days is None else reference - self.window_days * SECONDS_PER_DAY
        self.window_user_items_ = interactions.to_csr(
            self.event_weights, self.half_life_days, reference, start=since, end=until, dtype=np.float64
        )
        self.item_scores_ = np.asarray(self.window_user_items_.sum(axis=0), dtype=np.float64).ravel()
        upto = interactions.event_ts <= reference
        all_time = np.bincount(
            interactions.item_index[upto],
            weights=weight_vector(self.event_weights)[interactions.event_type[upto]],
            minlength=interactions.n_items,
        )
        self.ranking_ = np.lexsort((np.arange(interactions.n_items), -all_time, -self.item_scores_)).astype(np.int64)
        self.user_items_ = interactions.to_csr(end=until)
        self.reference_time_ = reference
        self.n_users_, self.n_items_ = interactions.n_users, interactions.n_items
        logger.info(
            "popularity: %d of %d items with events in the %s-day window",
            int((self.item_scores_ > 0).sum()),
            self.n_items_,
            self.window_days,
        )
        return self

    def ranking(self, filter_items: np.ndarray | None = None) -> np.ndarray:
        """The popularity ranking without ``filter_items``."""
        return self.ranking_[~self._blocked(filter_items)[self.ranking_]]

    def recommend(
        self,
        user_indices: np.ndarray,
        user_items: sp.csr_array | None = None,
        n: int = 10,
        exclude_seen: bool = False,
        filter_items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Most popular items, the same for every user unless ``exclude_seen``.

        Parameters
        ----------
        user_indices : numpy.ndarray
            Users to recommend for.
        user_items : scipy.sparse.csr_array, optional
            Their history rows (only read with ``exclude_seen``).
        n : int, default 10
            Items per user.
        exclude_seen : bool, default False
            Skip items in the user's history.
        filter_items : numpy.ndarray, optional
            Item indices never to recommend (for example out of stock).

        Returns
        -------
        items, scores : numpy.ndarray
            ``(len(user_indices), n)`` int64 items and float64 popularity scores.
        """
        users = np.asarray(user_indices, dtype=np.int64)
        ranking = self.ranking(filter_items)
        history = self._history(users, user_items) if exclude_seen or user_items is not None else None
        if exclude_seen:
            items = first_unexcluded(ranking, history, n)
        else:
            top = np.full(n, -1, dtype=np.int64)
            top[: min(n, len(ranking))] = ranking[:n]
            items = np.tile(top, (len(users), 1))
        scores = np.where(items >= 0, self.item_scores_[np.maximum(items, 0)], np.nan)
        return items, scores

    def recommend_groups(
        self, group_of_user: np.ndarray, n: int = 20, filter_items: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Popularity within user groups (segments), filled from the global ranking.

        Parameters
        ----------
        group_of_user : numpy.ndarray
            Int group code per fitted user (length ``n_users_``); ``-1`` = no group.
        n : int, default 20
            Items per group.
        filter_items : numpy.ndarray, optional
            Item indices never to recommend.

        Returns
        -------
        items, scores : numpy.ndarray
            ``(n_groups, n)`` with ``n_groups = group_of_user.max() + 1``;
            scores are the in-group popularity, ``0.0`` for items filled
            from the global ranking.
        """
        groups = np.asarray(group_of_user, dtype=np.int64)
        if len(groups) != self.n_users_:
            raise ValueError("group_of_user needs one entry per fitted user")
        n_groups = int(groups.max()) + 1 if len(groups) else 0
        members = np.flatnonzero(groups >= 0)
        indicator = sp.csr_array((np.ones(len(members)), (groups[members], members)), shape=(n_groups, self.n_users_))
        group_scores = sp.csr_array(indicator @ self.window_user_items_)
        group_scores.data[self._blocked(filter_items)[group_scores.indices]] = 0.0
        group_scores.eliminate_zeros()
        items, scores = top_n_per_row(group_scores, n)
        return fill_from_ranking(items, scores, self.ranking(filter_items), self.n_items_)


class ItemKNNRecommender(Recommender):
    """Item-based collaborative filtering on cosine (or Pearson) similarity.

    The item-item neighbourhoods come from ``implicit``'s
    ``CosineRecommender``: its ``all_pairs_knn`` computes the item x item
    product in parallel C++ keeping only the top ``k`` neighbours per item, so
    the full similarity matrix is never materialized. Scoring is our own
    ``history @ similarity`` in scipy, because ``implicit``'s batch
    ``recommend`` loops over users in Python and pads short lists with
    already-seen items instead of filling them from popularity.

    A user's score for item ``j`` is ``sum_i history[u, i] * sim[i, j]`` over the
    items ``i`` whose top-``k`` neighbours include ``j``.

    Parameters
    ----------
    k : int, default 100
        Neighbours kept per item.
    similarity : {"cosine", "pearson"}, default "cosine"
        ``pearson`` is cosine on the item columns with each item's mean
        stored value subtracted; negative similarities are dropped.
    shrinkage : float, default 10.0
        ``sim_ij = dot_ij / (|i| |j| + shrinkage)``: damps similarities
        between items with little data. Applied to the ``k`` neighbours kept
        by plain cosine (it never re-selects neighbours).
    event_weights : mapping of str to float, optional
        Confidence per event type, default view 1, cart 3, purchase 5.
    half_life_days : float, optional
        Exponential decay of the history's confidence.
    fallback : PopularityRecommender, optional
        Fills users with fewer than ``n`` candidates (cloned and fitted on the
        same data); default ``PopularityRecommender()``.
    num_threads : int, default 0
        Threads for the neighbour search (0 = all cores).
    random_state : int, optional
        Accepted for a uniform interface; the model is deterministic.

    Attributes
    ----------
    similarity_ : scipy.sparse.csr_array
        ``(n_items, n_items)``, row ``i`` holds the top-``k`` neighbours of
        ``i`` (without ``i`` itself).
    user_items_ : scipy.sparse.csr_array
        The confidence matrix the model was fitted on.
    fallback_ : PopularityRecommender
        The fitted fallback.
    reference_time_ : float
        The "now" of the fit, epoch seconds.
    n_users_, n_items_ : int
        Shape of the fitted data.
    """

    name = "item_knn"

    def __init__(
        self,
        k: int = 100,
        similarity: str = "cosine",
        shrinkage: float = 10.0,
        event_weights: Mapping[str, float] | None = None,
        half_life_days: float | None = None,
        fallback: PopularityRecommender | None = None,
        num_threads: int = 0,
        random_state: int | None = None,
    ) -> None:
        self.k = k
        self.similarity = similarity
        self.shrinkage = shrinkage
        self.event_weights = event_weights
        self.half_life_days = half_life_days
        self.fallback = fallback
        self.num_threads = num_threads
        self.random_state = random_state

    def fit(self, interactions: Interactions, reference_time: Timestamp | None = None) -> Self:
        """Build the confidence matrix and the item neighbourhoods.

        Parameters
        ----------
        interactions : Interactions
            Encoded events; only those at or before ``reference_time`` count.
        reference_time : timestamp, optional
            "Now" of the decay; defaults to the last event.

        Returns
        -------
        ItemKNNRecommender
            ``self``.
        """
        if self.similarity not in ("cosine", "pearson"):
            raise ValueError(f"unsupported similarity {self.similarity!r}; use 'cosine' or 'pearson'")
        if self.k < 1:
            raise ValueError("k must be at least 1")
        reference = self._reference(interactions, reference_time)
        until = np.nextafter(reference, np.inf)
        user_items = interactions.to_csr(self.event_weights, self.half_life_days, reference, end=until)
        basis = user_items
        if self.similarity == "pearson":  # cosine of the item columns centred on their mean stored value
            basis = sp.csr_array(_centered_rows(sp.csr_array(user_items.T)).T)

        neighbours = CosineRecommender(K=self.k + 1, num_threads=self.num_threads)  # +1: the item itself
        with warnings.catch_warnings():
            # implicit hands its own normalized COO matrix to a CSR-only check
            warnings.simplefilter("ignore", ParameterWarning)
            neighbours.fit(sp.csr_matrix(basis), show_progress=False)
        similarity = sp.csr_array(neighbours.similarity, dtype=np.float64)
        similarity = sp.csr_array(similarity - sp.diags_array(similarity.diagonal()))
        similarity.data[similarity.data < 0] = 0.0  # negative correlations are no evidence for a recommendation
        similarity.eliminate_zeros()
        if self.shrinkage:
            # cosine = dot / (|i||j|)  ->  dot / (|i||j| + shrinkage), on the stored entries only
            norms = np.sqrt(np.asarray(basis.multiply(basis).sum(axis=0), dtype=np.float64).ravel())
            rows = np.repeat(np.arange(similarity.shape[0]), np.diff(similarity.indptr))
            norm_products = norms[rows] * norms[similarity.indices]
            similarity.data *= norm_products / (norm_products + self.shrinkage)
        similarity.sort_indices()

        self.similarity_ = similarity
        self.user_items_ = user_items
        fallback = PopularityRecommender() if self.fallback is None else self.fallback
        self.fallback_ = clone(fallback).fit(interactions, reference)
        self.reference_time_ = reference
        self.n_users_, self.n_items_ = interactions.n_users, interactions.n_items
        logger.info(
            "item_knn: %d users x %d items, %d history entries, %d similarity entries (k=%d)",
            self.n_users_,
            self.n_items_,
            user_items.nnz,
            similarity.nnz,
            self.k,
        )
        return self

    def scores(self, user_indices: np.ndarray, user_items: sp.csr_array | None = None) -> sp.csr_array:
        """Sparse item-KNN scores ``history @ similarity`` of a batch of users."""
        history = self._history(np.asarray(user_indices, dtype=np.int64), user_items)
        return sp.csr_array(history @ self.similarity_)

    def recommend(
        self,
        user_indices: np.ndarray,
        user_items: sp.csr_array | None = None,
        n: int = 10,
        exclude_seen: bool = False,
        filter_items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items by item-KNN score, filled from popularity.

        Seen items stay candidates by default: in e-commerce, items a user viewed
        or carted but did not buy, and re-bought consumables, are among the
        strongest predictions (on the simulated shop, excluding them cut NDCG@10
        from 0.074 to 0.022).

        Parameters
        ----------
        user_indices : numpy.ndarray
            Users to recommend for.
        user_items : scipy.sparse.csr_array, optional
            Their history rows (confidence weights); default: the fitted history.
        n : int, default 10
            Items per user.
        exclude_seen : bool, default False
            Skip items the user already interacted with.
        filter_items : numpy.ndarray, optional
            Item indices never to recommend.

        Returns
        -------
        items, scores : numpy.ndarray
            ``(len(user_indices), n)``. Item-KNN candidates first by score;
            then popularity fill (score ``0.0``) for users with fewer than
            ``n`` candidates, so cold users get pure popularity.
        """
        users = np.asarray(user_indices, dtype=np.int64)
        history = self._history(users, user_items)
        scores = sp.csr_array(history @ self.similarity_)
        if exclude_seen:  # subtract the scores of seen items (two linear sparse merges)
            scores = sp.csr_array(scores - scores.multiply(history != 0))
        scores.data[self._blocked(filter_items)[scores.indices]] = 0.0
        scores.eliminate_zeros()
        items, values = top_n_per_row(scores, n, unique=True)  # a product: no repeated entries
        ranking = self.fallback_.ranking(filter_items)
        return fill_from_ranking(items, values, ranking, self.n_items_, history if exclude_seen else None)

    def similar_items(self, n: int = 20, filter_items: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` most similar items of every item.

        Parameters
        ----------
        n : int, default 20
            Neighbours per item.
        filter_items : numpy.ndarray, optional
            Items never returned as a neighbour.

        Returns
        -------
        items, scores : numpy.ndarray
            ``(n_items, n)``; ``-1``/``nan`` past an item's last neighbour.
        """
        similarity = self.similarity_.copy()
        similarity.data[self._blocked(filter_items)[similarity.indices]] = 0.0
        similarity.eliminate_zeros()
        return top_n_per_row(similarity, n)

    def explain(
        self, user_indices: np.ndarray, items: np.ndarray, user_items: sp.csr_array | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The history item that contributed most to each recommended item.

        For the pair (user ``u``, item ``j``) the contributions are the
        elementwise product ``history[u, :] * similarity[:, j]``; the answer
        is its row-wise argmax. Only the user's history entries are read (one
        batched sparse lookup of ``similarity[h, j]`` per history item ``h``
        and rank), never whole similarity columns, which are dense for
        popular items.

        Parameters
        ----------
        user_indices : numpy.ndarray
            ``(B,)`` users.
        items : numpy.ndarray
            ``(B, n)`` recommended items (``-1`` allowed).
        user_items : scipy.sparse.csr_array, optional
            History rows; default: the fitted history.

        Returns
        -------
        because : numpy.ndarray
            Int64 ``(B, n)`` history item, ``-1`` when nothing in the history
            points at the item (popularity fill, cold users).
        contribution : numpy.ndarray
            Float64 ``(B, n)`` its share of the score, ``nan`` where ``-1``.
        """
        users = np.asarray(user_indices, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64).reshape(len(users), -1)
        history = self._history(users, user_items)
        n = items.shape[1]
        # one candidate per (history entry, rank): the pair (user b, rank r) and the history item h
        entry_user = np.repeat(np.arange(len(users), dtype=np.int64), np.diff(history.indptr))
        pair = (entry_user[:, None] * n + np.arange(n)[None, :]).ravel()
        source = np.repeat(history.indices.astype(np.int64), n)
        target = items[entry_user].ravel()
        valid = target >= 0
        value = np.zeros(len(pair))
        value[valid] = np.repeat(history.data, n)[valid] * lookup(self.similarity_, source[valid], target[valid])
        contributions = sp.csr_array((value, (pair, source)), shape=(len(users) * n, self.n_items_))
        contributions.eliminate_zeros()
        because, contribution = top_n_per_row(contributions, 1)
        return because.reshape(items.shape), contribution.reshape(items.shape)


class RepeatPurchaseRecommender(Recommender):
    """Buy again: the user's own purchases by recency-weighted frequency, then popularity.

    A user's score for item ``j`` is ``sum over their purchases of j of
    2 ** (-age_days / half_life_days)`` with the age taken at the fit's
    reference time, so three purchases beat one of the same age and a recent
    purchase beats an old one. Items the user never bought are filled from
    popularity with score ``0.0`` (below every own item). Written here, not
    taken from ``implicit``: it has no repeat-purchase model.

    Like ``implicit``'s ``recommend(..., recalculate_user=False)``, scores
    come from the fitted purchases of ``user_indices``; explicit
    ``user_items`` rows are only read for ``exclude_seen``.

    Parameters
    ----------
    half_life_days : float, default 30.0
        A purchase ``half_life_days`` before the reference time counts half.
    fallback : PopularityRecommender, optional
        Fills the rest of the list (cloned and fitted on the same data);
        default ``PopularityRecommender()``.
    random_state : int, optional
        Accepted for a uniform interface; the model is deterministic.

    Attributes
    ----------
    purchase_scores_ : scipy.sparse.csr_array
        Float64 ``(n_users, n_items)`` recency-weighted purchase counts.
    user_items_ : scipy.sparse.csr_array
        The users' full history (every event type, for ``exclude_seen``).
    fallback_ : PopularityRecommender
        The fitted fallback.
    reference_time_ : float
        The "now" of the fit, epoch seconds.
    n_users_, n_items_ : int
        Shape of the fitted data.
    """

    name = "repeat_purchase"

    def __init__(
        self,
        half_life_days: float = 30.0,
        fallback: PopularityRecommender | None = None,
        random_state: int | None = None,
    ) -> None:
        self.half_life_days = half_life_days
        self.fallback = fallback
        self.random_state = random_state

    def fit(self, interactions: Interactions, reference_time: Timestamp | None = None) -> Self:
        """Weigh every purchase by its age and sum per (user, item).

        Parameters
        ----------
        interactions : Interactions
            Encoded events; only those at or before ``reference_time`` count.
        reference_time : timestamp, optional
            "Now" of the decay; defaults to the last event.

        Returns
        -------
        RepeatPurchaseRecommender
            ``self``.
        """
        if self.half_life_days is None or self.half_life_days <= 0:
            raise ValueError("half_life_days must be positive")
        reference = self._reference(interactions, reference_time)
        until = np.nextafter(reference, np.inf)
        self.purchase_scores_ = interactions.to_csr(
            {"purchase": 1.0}, self.half_life_days, reference, end=until, dtype=np.float64
        )
        self.user_items_ = interactions.to_csr(end=until)
        fallback = PopularityRecommender() if self.fallback is None else self.fallback
        self.fallback_ = clone(fallback).fit(interactions, reference)
        self.reference_time_ = reference
        self.n_users_, self.n_items_ = interactions.n_users, interactions.n_items
        logger.info(
            "repeat_purchase: %d (user, item) purchase pairs of %d users",
            self.purchase_scores_.nnz,
            int((np.diff(self.purchase_scores_.indptr) > 0).sum()),
        )
        return self

    def recommend(
        self,
        user_indices: np.ndarray,
        user_items: sp.csr_array | None = None,
        n: int = 10,
        exclude_seen: bool = False,
        filter_items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The user's own purchases first (recency-weighted count), then popularity.

        Parameters
        ----------
        user_indices : numpy.ndarray
            Fitted users to recommend for.
        user_items : scipy.sparse.csr_array, optional
            Their history rows (only read with ``exclude_seen``).
        n : int, default 10
            Items per user.
        exclude_seen : bool, default False
            Skip items in the user's history (which leaves popularity only).
        filter_items : numpy.ndarray, optional
            Item indices never to recommend.

        Returns
        -------
        items, scores : numpy.ndarray
            ``(len(user_indices), n)``; own purchases by score, then the
            popularity fill with score ``0.0``.
        """
        users = np.asarray(user_indices, dtype=np.int64)
        history = self._history(users, user_items)
        if np.any(users >= self.n_users_) or np.any(users < 0):
            raise IndexError("user index out of range of the fitted users")
        scores = sp.csr_array(self.purchase_scores_[users])
        if exclude_seen:
            scores = sp.csr_array(scores - scores.multiply(history != 0))
        scores.sum_duplicates()
        scores.data[self._blocked(filter_items)[scores.indices]] = 0.0
        scores.eliminate_zeros()
        items, values = top_n_per_row(scores, n)
        ranking = self.fallback_.ranking(filter_items)
        return fill_from_ranking(items, values, ranking, self.n_items_, history if exclude_seen else None)


def _centered_rows(matrix: sp.csr_array) -> sp.csr_array:
    """Subtract each row's mean of its stored values from them (a copy; entries that become 0 are dropped)."""
    matrix = sp.csr_array(matrix, dtype=np.float64, copy=True)
    matrix.sum_duplicates()
    counts = np.diff(matrix.indptr)
    rows = np.repeat(np.arange(matrix.shape[0]), counts)
    sums = np.bincount(rows, weights=matrix.data, minlength=matrix.shape[0])
    matrix.data -= np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)[rows]
    matrix.eliminate_zeros()
    return matrix


def _normalized_rows(matrix: sp.csr_array, center: bool) -> sp.csr_array:
    """L2-normalize the rows of a CSR matrix, after subtracting each row's mean of its stored values if ``center``."""
    matrix = _centered_rows(matrix) if center else sp.csr_array(matrix, dtype=np.float64, copy=True)
    matrix.sum_duplicates()
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    norms = np.sqrt(np.bincount(rows, weights=matrix.data**2, minlength=matrix.shape[0]))
    matrix.data /= np.where(norms > 0, norms, 1.0)[rows]
    matrix.eliminate_zeros()
    return matrix


def _top_k_sparse(similarity: sp.csr_array, k: int, dense_limit: int) -> sp.csr_array:
    """Keep the ``k`` largest positive entries of every row (argpartition on a dense block when it is small);
    ``similarity`` is a sparse product (no repeated entries, columns unsorted)."""
    n_rows, n_cols = similarity.shape
    if n_rows * n_cols <= dense_limit:
        block = similarity.toarray()
        if k < n_cols:
            columns = np.argpartition(-block, k - 1, axis=1)[:, :k]
        else:
            columns = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols))
        values = np.take_along_axis(block, columns, axis=1)
    else:
        columns, values = top_n_per_row(similarity, k, unique=True)
    keep = (columns >= 0) & (values > 0)
    rows = np.broadcast_to(np.arange(n_rows)[:, None], columns.shape)
    return sp.csr_array((values[keep], (rows[keep], columns[keep])), shape=similarity.shape)


class UserKNNRecommender(Recommender):
    """User-based collaborative filtering: the history of the ``k`` most similar users.

    Similarities are computed at recommend time, for one batch of users at a
    time against all fitted users (one sparse product ``batch @ users.T``),
    and only the top ``k`` positive ones per user are kept (argpartition on
    the dense ``batch x users`` block when it is at most ``dense_limit``
    entries, else a sparse per-row top-k). The score of item ``j`` is the
    similarity-weighted average ``sum_v sim(u, v) r[v, j] / sum_v sim(u, v)``
    over the neighbours ``v``; users with fewer than ``n`` candidates are
    filled from popularity with score ``0.0``. Written here because
    ``implicit`` only has item-item neighbourhoods.

    Parameters
    ----------
    k : int, default 50
        Neighbours per user.
    similarity : {"cosine", "pearson"}, default "cosine"
        ``pearson`` is cosine on the rows with the row mean of the stored
        values subtracted from the stored values (absent items stay 0).
    event_weights : mapping of str to float, optional
        Confidence per event type, default view 1, cart 3, purchase 5.
    half_life_days : float, optional
        Exponential decay of the confidence.
    fallback : PopularityRecommender, optional
        Fill (cloned and fitted on the same data); default ``PopularityRecommender()``.
    batch_size : int, default 1000
        Users per similarity block (bounds memory: ``batch_size x n_users``).
    dense_limit : int, default 2 ** 23
        Largest ``batch x users`` block that is densified for the top-k.
    random_state : int, optional
        Accepted for a uniform interface; the model is deterministic.

    Attributes
    ----------
    user_items_ : scipy.sparse.csr_array
        The confidence matrix the neighbours' rows are read from.
    normalized_ : scipy.sparse.csr_array
        Unit-norm (centred for ``pearson``) rows used for the similarities.
    fallback_ : PopularityRecommender
        The fitted fallback.
    reference_time_ : float
        The "now" of the fit, epoch seconds.
    n_users_, n_items_ : int
        Shape of the fitted data.
    """

    name = "user_knn"

    def __init__(
        self,
        k: int = 50,
        similarity: str = "cosine",
        event_weights: Mapping[str, float] | None = None,
        half_life_days: float | None = None,
        fallback: PopularityRecommender | None = None,
        batch_size: int = 1000,
        dense_limit: int = 2**23,
        random_state: int | None = None,
    ) -> None:
        self.k = k
        self.similarity = similarity
        self.event_weights = event_weights
        self.half_life_days = half_life_days
        self.fallback = fallback
        self.batch_size = batch_size
        self.dense_limit = dense_limit
        self.random_state = random_state

    def fit(self, interactions: Interactions, reference_time: Timestamp | None = None) -> Self:
        """Build the confidence matrix and its normalized rows.

        Parameters
        ----------
        interactions : Interactions
            Encoded events; only those at or before ``reference_time`` count.
        reference_time : timestamp, optional
            "Now" of the decay; defaults to the last event.

        Returns
        -------
        UserKNNRecommender
            ``self``.
        """
        if self.similarity not in ("cosine", "pearson"):
            raise ValueError(f"unsupported similarity {self.similarity!r}; use 'cosine' or 'pearson'")
        if self.k < 1 or self.batch_size < 1:
            raise ValueError("k and batch_size must be at least 1")
        reference = self._reference(interactions, reference_time)
        until = np.nextafter(reference, np.inf)
        self.user_items_ = interactions.to_csr(
            self.event_weights, self.half_life_days, reference, end=until, dtype=np.float64
        )
        self.normalized_ = _normalized_rows(self.user_items_, center=self.similarity == "pearson")
        fallback = PopularityRecommender() if self.fallback is None else self.fallback
        self.fallback_ = clone(fallback).fit(interactions, reference)
        self.reference_time_ = reference
        self.n_users_, self.n_items_ = interactions.n_users, interactions.n_items
        logger.info("user_knn: %d users x %d items (%s, k=%d)", self.n_users_, self.n_items_, self.similarity, self.k)
        return self

    def neighbours(self, user_indices: np.ndarray, user_items: sp.csr_array | None = None) -> sp.csr_array:
        """Top-``k`` positive similarities of a batch of users to the fitted users (a user is not its own neighbour).

        Returns
        -------
        scipy.sparse.csr_array
            ``(len(user_indices), n_users_)``.
        """
        users = np.asarray(user_indices, dtype=np.int64)
        history = self._history(users, user_items)
        center = self.similarity == "pearson"
        normalized = self.normalized_[users] if user_items is None else _normalized_rows(history, center)
        # a sparse product has no repeated entries: its columns stay unsorted (sorting cost more than the product)
        similarity = sp.csr_array(normalized @ self.normalized_.T)
        entry_rows = np.repeat(np.arange(len(users)), np.diff(similarity.indptr))
        is_self = similarity.indices == users[entry_rows]
        similarity.data[is_self | (similarity.data < 1e-12)] = 0.0  # rounding noise of orthogonal rows
        similarity.eliminate_zeros()
        return _top_k_sparse(similarity, self.k, self.dense_limit)

    def recommend(
        self,
        user_indices: np.ndarray,
        user_items: sp.csr_array | None = None,
        n: int = 10,
        exclude_seen: bool = False,
        filter_items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items by the neighbours' weighted average, filled from popularity.

        Parameters
        ----------
        user_indices : numpy.ndarray
            Users to recommend for.
        user_items : scipy.sparse.csr_array, optional
            Their history rows (confidence weights); default: the fitted history.
        n : int, default 10
            Items per user.
        exclude_seen : bool, default False
            Skip items the user already interacted with.
        filter_items : numpy.ndarray, optional
            Item indices never to recommend.

        Returns
        -------
        items, scores : numpy.ndarray
            ``(len(user_indices), n)``; neighbour scores (> 0), then the
            popularity fill with score ``0.0``.
        """
        users = np.asarray(user_indices, dtype=np.int64)
        history = self._history(users, user_items)
        blocked = self._blocked(filter_items)
        ranking = self.fallback_.ranking(filter_items)
        items = np.full((len(users), n), -1, dtype=np.int64)
        values = np.full((len(users), n), np.nan)
        for start in range(0, len(users), self.batch_size):  # batches of users bound the similarity block
            stop = start + self.batch_size
            batch_history = history[start:stop]
            neighbours = self.neighbours(users[start:stop], None if user_items is None else batch_history)
            total = np.asarray(neighbours.sum(axis=1)).ravel()
            neighbours = sp.csr_array(sp.diags_array(1.0 / np.where(total > 0, total, 1.0)) @ neighbours)
            scores = sp.csr_array(neighbours @ self.user_items_)
            if exclude_seen:
                scores = sp.csr_array(scores - scores.multiply(batch_history != 0))
            scores.data[blocked[scores.indices]] = 0.0
            scores.eliminate_zeros()
            items[start:stop], values[start:stop] = top_n_per_row(scores, n, unique=True)  # a product
        return fill_from_ranking(items, values, ranking, self.n_items_, history if exclude_seen else None)


class ALSRecommender(Recommender):
    """Implicit-feedback matrix factorization (``implicit``'s CPU alternating least squares).

    The confidence matrix is ``alpha x`` the event-weighted user x item matrix
    (``implicit`` applies ``alpha``). Fitting runs under
    ``threadpool_limits(1, "blas")``: ``implicit`` parallelizes over users
    itself and a multi-threaded BLAS inside would oversubscribe the cores.
    Scoring is our own ``user_factors @ item_factors.T`` in dense blocks of
    users with an ``np.argpartition`` top-n (``implicit``'s batch
    ``recommend`` ranks user by user). Users without history get the
    popularity ranking (score ``0.0``). Like ``implicit``'s
    ``recommend(..., recalculate_user=False)``, the factors are the fitted
    ones; explicit ``user_items`` rows are read for ``exclude_seen`` and to
    tell cold users.

    Parameters
    ----------
    factors : int, default 64
        Latent dimensions.
    regularization : float, default 0.05
        L2 penalty of the factors.
    iterations : int, default 15
        ALS sweeps.
    alpha : float, default 2.0
        Confidence scale.
    event_weights : mapping of str to float, optional
        Weight per event type, default view 1, cart 3, purchase 5.
    half_life_days : float, optional
        Exponential decay of the confidence.
    fallback : PopularityRecommender, optional
        Ranking for cold users (cloned and fitted on the same data).
    batch_size : int, default 2000
        Users per dense score block (``batch_size x n_items`` floats).
    num_threads : int, default 0
        ``implicit``'s threads (0 = all cores).
    random_state : int, optional
        Seed of the factor initialization.

    Attributes
    ----------
    user_factors_, item_factors_ : numpy.ndarray
        Float32 ``(n_users, factors)`` and ``(n_items, factors)``.
    user_items_ : scipy.sparse.csr_array
        The weighted matrix the model was fitted on (before ``alpha``).
    fallback_ : PopularityRecommender
        The fitted fallback.
    reference_time_ : float
        The "now" of the fit, epoch seconds.
    n_users_, n_items_ : int
        Shape of the fitted data.
    """

    name = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        iterations: int = 15,
        alpha: float = 2.0,
        event_weights: Mapping[str, float] | None = None,
        half_life_days: float | None = None,
        fallback: PopularityRecommender | None = None,
        batch_size: int = 2000,
        num_threads: int = 0,
        random_state: int | None = None,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.iterations = iterations
        self.alpha = alpha
        self.event_weights = event_weights
        self.half_life_days = half_life_days
        self.fallback = fallback
        self.batch_size = batch_size
        self.num_threads = num_threads
        self.random_state = random_state

    def fit(self, interactions: Interactions, reference_time: Timestamp | None = None) -> Self:
        """Factorize the confidence matrix.

        Parameters
        ----------
        interactions : Interactions
            Encoded events; only those at or before ``reference_time`` count.
        reference_time : timestamp, optional
            "Now" of the decay; defaults to the last event.

        Returns
        -------
        ALSRecommender
            ``self``.
        """
        reference = self._reference(interactions, reference_time)
        until = np.nextafter(reference, np.inf)
        user_items = interactions.to_csr(self.event_weights, self.half_life_days, reference, end=until)
        with threadpool_limits(1, "blas"):  # implicit checks the BLAS threads when it is constructed
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                num_threads=self.num_threads,
                random_state=self.random_state,
            )
            model.fit(sp.csr_matrix(user_items), show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)
        self.user_items_ = user_items
        fallback = PopularityRecommender() if self.fallback is None else self.fallback
        self.fallback_ = clone(fallback).fit(interactions, reference)
        self.reference_time_ = reference
        self.n_users_, self.n_items_ = interactions.n_users, interactions.n_items
        logger.info(
            "als: %d users x %d items, %d factors, %d iterations",
            self.n_users_,
            self.n_items_,
            self.factors,
            self.iterations,
        )
        return self

    def recommend(
        self,
        user_indices: np.ndarray,
        user_items: sp.csr_array | None = None,
        n: int = 10,
        exclude_seen: bool = False,
        filter_items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items by ``user_factors @ item_factors.T``; popularity for cold users.

        Parameters
        ----------
        user_indices : numpy.ndarray
            Fitted users to recommend for.
        user_items : scipy.sparse.csr_array, optional
            Their history rows; default: the fitted history.
        n : int, default 10
            Items per user.
        exclude_seen : bool, default False
            Skip items the user already interacted with.
        filter_items : numpy.ndarray, optional
            Item indices never to recommend.

        Returns
        -------
        items, scores : numpy.ndarray
            ``(len(user_indices), n)``; factor scores for users with history,
            the popularity ranking with score ``0.0`` for cold users.
        """
        users = np.asarray(user_indices, dtype=np.int64)
        history = self._history(users, user_items)
        if np.any(users >= self.n_users_) or np.any(users < 0):
            raise IndexError("user index out of range of the fitted users")
        blocked = self._blocked(filter_items)
        warm = np.diff(history.indptr) > 0
        items = np.full((len(users), n), -1, dtype=np.int64)
        values = np.full((len(users), n), np.nan)
        width = min(n, self.n_items_)
        for start in range(0, len(users), self.batch_size):  # dense blocks of users
            stop = min(start + self.batch_size, len(users))
            scores = (self.user_factors_[users[start:stop]] @ self.item_factors_.T).astype(np.float64)
            scores[:, blocked] = -np.inf
            if exclude_seen:
                seen = history[start:stop]
                scores[np.repeat(np.arange(stop - start), np.diff(seen.indptr)), seen.indices] = -np.inf
            if width == 0:
                continue
            top = np.argpartition(-scores, width - 1, axis=1)[:, :width] if width < self.n_items_ else None
            if top is None:
                top = np.broadcast_to(np.arange(self.n_items_), scores.shape)
            top_scores = np.take_along_axis(scores, top, axis=1)
            order = np.lexsort((top, -top_scores), axis=1)  # by score, ties by item index
            top, top_scores = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)
            valid = np.isfinite(top_scores)
            items[start:stop, :width] = np.where(valid, top, -1)
            values[start:stop, :width] = np.where(valid, top_scores, np.nan)
        items[~warm], values[~warm] = -1, np.nan
        return fill_from_ranking(
            items, values, self.fallback_.ranking(filter_items), self.n_items_, history if exclude_seen else None
        )


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


class SVDRecommender(Recommender):
    """Explicit-rating matrix factorization ("Funk SVD" with biases) trained by mini-batch SGD.

    A rating is modelled as ``r_hat(u, i) = mu + b_u + b_i + p_u . q_i`` and
    the model minimizes the regularized squared error
    ``sum (r - r_hat)^2 + regularization (b_u^2 + b_i^2 + |p_u|^2 + |q_i|^2)``
    over the 1-5 review ratings (``Interactions.ratings``, the latest one
    per user and item) with stochastic gradient descent: every epoch visits
    the ratings in a new random order, in mini-batches whose updates are
    computed from the parameters before the batch and scattered with
    ``np.add.at``. A user or item rated several times in a batch gets the sum
    of its updates, damped once that sum could overshoot (see
    :meth:`_damping`), so large batches stay stable; with ``batch_size=1``
    this is the textbook per-rating update (the damping does not engage at
    usual learning rates). ``mu`` is the mean training rating. Written
    here: ``implicit`` only factorizes implicit feedback, and
    ``scikit-surprise`` would add a pinned dependency with its own dataset
    and id mapping for this one model.

    Users or items without a training rating keep zero bias and zero factors,
    so :meth:`predict` falls back to ``mu + b_i`` (unknown user), ``mu + b_u``
    (unknown item) or ``mu`` (both; 3.0, the middle of the scale, when there
    were no ratings at all).

    :meth:`recommend` ranks, for users with at least one rating, the items
    that have at least one rating by predicted rating (score: the prediction
    clipped to [1, 5]); items nobody rated and users who rated nothing get
    the popularity fill (score ``0.0``), because a predicted rating says
    little about what a user will buy next. Like :class:`ALSRecommender`,
    seen items stay candidates unless ``exclude_seen`` (which drops the
    user's event history, so also the items they bought and rated); explicit
    ``user_items`` rows are only read for ``exclude_seen``, the factors are
    the fitted ones.

    Parameters
    ----------
    factors : int, default 32
        Latent dimensions (0 gives the bias-only baseline).
    epochs : int, default 30
        Passes over the ratings.
    learning_rate : float, default 0.01
        SGD step size.
    regularization : float, default 0.05
        L2 penalty of the biases and the factors, per rating visited.
    batch_size : int, default 1024
        Ratings per SGD mini-batch.
    init_std : float, default 0.1
        Standard deviation of the normal initialization of the factors.
    fallback : PopularityRecommender, optional
        Ranking for users without ratings and for the rest of the list
        (cloned and fitted on the same events); default ``PopularityRecommender()``.
    dense_limit : int, default 2 ** 24
        Largest ``users x rated items`` score block :meth:`recommend` builds
        (float64: 128 MB); at least one user per block.
    random_state : int, optional
        Seed of the initialization and of the visiting order.

    Attributes
    ----------
    global_mean_ : float
        ``mu``, the mean training rating (3.0 without ratings).
    user_bias_, item_bias_ : numpy.ndarray
        Float64 ``(n_users,)`` and ``(n_items,)``; 0 without training ratings.
    user_factors_, item_factors_ : numpy.ndarray
        Float64 ``(n_users, factors)`` and ``(n_items, factors)``; rows of
        users or items without training ratings are 0.
    user_rated_, item_rated_ : numpy.ndarray
        Boolean masks: has at least one training rating.
    n_ratings_ : int
        Ratings trained on (the latest rating per user and item).
    epoch_rmse_ : numpy.ndarray
        Per epoch, the RMSE of the ratings as their batch was visited (before its update).
    user_items_ : scipy.sparse.csr_array
        The users' event history (for ``exclude_seen``).
    fallback_ : PopularityRecommender
        The fitted fallback.
    reference_time_ : float
        The "now" of the fit, epoch seconds.
    n_users_, n_items_ : int
        Shape of the fitted data.
    """

    name = "svd"

    def __init__(
        self,
        factors: int = 32,
        epochs: int = 30,
        learning_rate: float = 0.01,
        regularization: float = 0.05,
        batch_size: int = 1024,
        init_std: float = 0.1,
        fallback: PopularityRecommender | None = None,
        dense_limit: int = 2**24,
        random_state: int | None = None,
    ) -> None:
        self.factors = factors
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.batch_size = batch_size
        self.init_std = init_std
        self.fallback = fallback
        self.dense_limit = dense_limit
        self.random_state = random_state

    @staticmethod
    def _training_ratings(
        interactions: Interactions, reference_time: Timestamp | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """User, item and rating arrays: before ``reference_time``, the latest per (user, item), sorted by both."""
        ratings = interactions.ratings
        if ratings is None:  # a shop without reviews: everybody gets the popularity fill
            logger.warning("svd: no ratings attached (Interactions.with_side_data(ratings=...)); nothing to factorize")
            ratings = pd.DataFrame({"user_index": [], "item_index": [], "rating": [], "rated_ts": []})
        users = ratings["user_index"].to_numpy(dtype=np.int64)
        items = ratings["item_index"].to_numpy(dtype=np.int64)
        values = ratings["rating"].to_numpy(dtype=np.float64)
        rated_ts = ratings["rated_ts"].to_numpy(dtype=np.float64)
        if reference_time is not None:
            known = rated_ts < to_epoch_seconds(reference_time)
            users, items, values, rated_ts = users[known], items[known], values[known], rated_ts[known]
        # a canonical order (so the input order does not matter) in which the latest rating of a pair comes last
        order = np.lexsort((values, rated_ts, items, users))
        users, items, values = users[order], items[order], values[order]
        latest = np.ones(len(users), dtype=bool)
        latest[:-1] = (users[1:] != users[:-1]) | (items[1:] != items[:-1])
        if not latest.all():
            logger.info("svd: %d earlier ratings of a user and item replaced by the latest", int((~latest).sum()))
        return users[latest], items[latest], values[latest]

    def fit(self, interactions: Interactions, reference_time: Timestamp | None = None) -> Self:
        """Factorize the ratings given before ``reference_time``.

        Parameters
        ----------
        interactions : Interactions
            Encoded events with :attr:`~recsys.features.interactions.Interactions.ratings`;
            the events (at or before ``reference_time``) feed the popularity
            fallback and ``exclude_seen``.
        reference_time : timestamp, optional
            Only ratings strictly before it are used; default: all ratings
            (and the last event as the fallback's "now").

        Returns
        -------
        SVDRecommender
            ``self``.

        Raises
        ------
        ValueError
            If ``interactions.ratings`` is ``None`` or a parameter is out of range.
        """
        if self.factors < 0 or self.epochs < 0 or self.batch_size < 1:
            raise ValueError("factors and epochs must be at least 0, batch_size at least 1")
        if self.learning_rate <= 0 or self.regularization < 0 or self.init_std < 0:
            raise ValueError("learning_rate must be positive, regularization and init_std not negative")
        users, items, ratings = self._training_ratings(interactions, reference_time)
        n_users, n_items = interactions.n_users, interactions.n_items
        rng = np.random.default_rng(self.random_state)
        mu = float(ratings.mean()) if len(ratings) else 3.0
        user_bias, item_bias = np.zeros(n_users), np.zeros(n_items)
        user_factors = rng.normal(0.0, self.init_std, (n_users, self.factors))
        item_factors = rng.normal(0.0, self.init_std, (n_items, self.factors))
        rate, penalty = self.learning_rate, self.regularization
        epoch_rmse = np.full(self.epochs, np.nan)
        for epoch in range(self.epochs):  # epochs and batches; each batch is one vectorized step
            order = rng.permutation(len(ratings))
            squared_error = 0.0
            for start in range(0, len(ratings), self.batch_size):
                batch = order[start : start + self.batch_size]
                user, item = users[batch], items[batch]
                user_vector, item_vector = user_factors[user], item_factors[item]
                error = ratings[batch] - (
                    mu + user_bias[user] + item_bias[item] + np.einsum("ij,ij->i", user_vector, item_vector)
                )
                squared_error += float(error @ error)
                user_step = rate * self._damping(user, item_vector, rate, penalty)[:, None]
                item_step = rate * self._damping(item, user_vector, rate, penalty)[:, None]
                user_gradient = error[:, None] * item_vector - penalty * user_vector
                item_gradient = error[:, None] * user_vector - penalty * item_vector
                np.add.at(user_bias, user, user_step[:, 0] * (error - penalty * user_bias[user]))
                np.add.at(item_bias, item, item_step[:, 0] * (error - penalty * item_bias[item]))
                np.add.at(user_factors, user, user_step * user_gradient)
                np.add.at(item_factors, item, item_step * item_gradient)
            if len(ratings):
                epoch_rmse[epoch] = np.sqrt(squared_error / len(ratings))

        self.user_rated_ = np.bincount(users, minlength=n_users) > 0
        self.item_rated_ = np.bincount(items, minlength=n_items) > 0
        user_factors[~self.user_rated_] = 0.0  # never trained: their prediction is the bias fallback
        item_factors[~self.item_rated_] = 0.0
        self.global_mean_ = mu
        self.user_bias_, self.item_bias_ = user_bias, item_bias
        self.user_factors_, self.item_factors_ = user_factors, item_factors
        self.n_ratings_ = len(ratings)
        self.epoch_rmse_ = epoch_rmse
        reference = self._reference(interactions, reference_time)
        self.user_items_ = interactions.to_csr(end=np.nextafter(reference, np.inf))
        fallback = PopularityRecommender() if self.fallback is None else self.fallback
        self.fallback_ = clone(fallback).fit(interactions, reference)
        self.reference_time_ = reference
        self.n_users_, self.n_items_ = n_users, n_items
        logger.info(
            "svd: %d ratings of %d users on %d items, %d factors, %d epochs, last epoch RMSE %.3f",
            self.n_ratings_,
            int(self.user_rated_.sum()),
            int(self.item_rated_.sum()),
            self.factors,
            self.epochs,
            epoch_rmse[-1] if self.epochs else np.nan,
        )
        return self

    @staticmethod
    def _damping(index: np.ndarray, partner: np.ndarray, rate: float, penalty: float) -> np.ndarray:
        """Per rating of a batch, ``1 / max(1, rate x curvature)`` of its user (or item).

        ``curvature`` sums ``1 + |partner vector|^2 + penalty`` over the
        batch's ratings of that user: a bound on the largest eigenvalue of
        the user's least-squares problem in ``(b_u, p_u)``, so the summed
        step of a user rated many times in one batch never overshoots. It is
        1 (plain SGD) while ``rate x curvature <= 1``.
        """
        _, inverse = np.unique(index, return_inverse=True)
        curvature = np.bincount(inverse, weights=1.0 + np.einsum("ij,ij->i", partner, partner) + penalty)
        return 1.0 / np.maximum(1.0, rate * curvature)[inverse]

    def predict(self, user_indices: np.ndarray, item_indices: np.ndarray) -> np.ndarray:
        """Predicted ratings of (user, item) pairs, clipped to [1, 5].

        Parameters
        ----------
        user_indices, item_indices : numpy.ndarray
            Int indices of the fitted encoding; broadcast against each other.
            A user or item without training ratings, or an index outside the
            encoding (``-1``, an item first seen later), is unknown.

        Returns
        -------
        numpy.ndarray
            Float64 of the broadcast shape: ``mu + b_u + b_i + p_u . q_i``,
            which is ``mu + b_i`` for an unknown user, ``mu + b_u`` for an
            unknown item and ``mu`` when both are unknown.
        """
        users, items = np.broadcast_arrays(
            np.asarray(user_indices, dtype=np.int64), np.asarray(item_indices, dtype=np.int64)
        )
        known_user = (users >= 0) & (users < self.n_users_)
        known_item = (items >= 0) & (items < self.n_items_)
        user, item = np.where(known_user, users, 0).ravel(), np.where(known_item, items, 0).ravel()
        known_user, known_item = known_user.ravel(), known_item.ravel()
        prediction = (
            self.global_mean_
            + np.where(known_user, self.user_bias_[user], 0.0)
            + np.where(known_item, self.item_bias_[item], 0.0)
            + np.where(
                known_user & known_item,
                np.einsum("ij,ij->i", self.user_factors_[user], self.item_factors_[item]),
                0.0,
            )
        )
        return np.clip(prediction, 1.0, 5.0).reshape(users.shape)

    def recommend(
        self,
        user_indices: np.ndarray,
        user_items: sp.csr_array | None = None,
        n: int = 10,
        exclude_seen: bool = False,
        filter_items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` rated items by predicted rating for users with ratings; popularity for the rest.

        Parameters
        ----------
        user_indices : numpy.ndarray
            Fitted users to recommend for.
        user_items : scipy.sparse.csr_array, optional
            Their history rows (only read with ``exclude_seen``); default: the fitted history.
        n : int, default 10
            Items per user.
        exclude_seen : bool, default False
            Skip items the user already interacted with.
        filter_items : numpy.ndarray, optional
            Item indices never to recommend.

        Returns
        -------
        items, scores : numpy.ndarray
            ``(len(user_indices), n)``; items with ratings ranked by predicted
            rating (unclipped, ties by item index) with the prediction clipped
            to [1, 5] as score, then the popularity fill with score ``0.0``.
        """
        users = np.asarray(user_indices, dtype=np.int64)
        history = self._history(users, user_items)
        if np.any(users >= self.n_users_) or np.any(users < 0):
            raise IndexError("user index out of range of the fitted users")
        candidates = np.flatnonzero(self.item_rated_ & ~self._blocked(filter_items))
        column = np.full(self.n_items_, -1, dtype=np.int64)
        column[candidates] = np.arange(len(candidates))
        item_factors, item_bias = self.item_factors_[candidates], self.item_bias_[candidates]
        items = np.full((len(users), n), -1, dtype=np.int64)
        values = np.full((len(users), n), np.nan)
        warm = np.flatnonzero(self.user_rated_[users])
        block = max(1, self.dense_limit // max(1, len(candidates)))
        for start in range(0, len(warm), block):  # dense blocks of the users with ratings
            rows = warm[start : start + block]
            batch = users[rows]
            scores = self.global_mean_ + self.user_bias_[batch][:, None] + item_bias[None, :]
            scores += self.user_factors_[batch] @ item_factors.T
            if exclude_seen:
                seen = history[rows]
                seen_rows = np.repeat(np.arange(len(rows)), np.diff(seen.indptr))
                seen_columns = column[seen.indices]
                scores[seen_rows[seen_columns >= 0], seen_columns[seen_columns >= 0]] = -np.inf
            top, top_scores = top_n_dense(scores, n)
            items[rows] = np.where(top >= 0, candidates[np.maximum(top, 0)], -1)
            values[rows] = np.clip(top_scores, 1.0, 5.0)
        return fill_from_ranking(
            items, values, self.fallback_.ranking(filter_items), self.n_items_, history if exclude_seen else None
        )


#: model name -> class, the models ``recsys.orchestration.training`` evaluates
MODELS: dict[str, type[Recommender]] = {
    PopularityRecommender.name: PopularityRecommender,
    ItemKNNRecommender.name: ItemKNNRecommender,
    RepeatPurchaseRecommender.name: RepeatPurchaseRecommender,
    UserKNNRecommender.name: UserKNNRecommender,
    ALSRecommender.name: ALSRecommender,
    SVDRecommender.name: SVDRecommender,
}
