"""Neighbourhood collaborative filtering: item-based (``implicit``'s cosine KNN) and user-based."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Self

import numpy as np
import scipy.sparse as sp
from implicit.nearest_neighbours import CosineRecommender
from implicit.utils import ParameterWarning
from sklearn.base import clone

from recsys.features.interactions import Interactions, Timestamp, lookup
from recsys.models.base import Recommender, ScoreBatch, top_n_per_row
from recsys.models.popularity import PopularityRecommender

logger = logging.getLogger(__name__)


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
    items ``i`` whose top-``k`` neighbours include ``j``; users with fewer than
    ``n`` candidates are filled from popularity (score ``0.0``), so cold users
    get pure popularity. Seen items stay candidates by default (on the simulated
    shop, excluding them cut NDCG@10 from 0.074 to 0.022).

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

    def _score_batch(self, batch: ScoreBatch) -> sp.csr_array:
        """``history @ similarity``: a sparse product (no repeated entries), the candidates its stored entries."""
        return sp.csr_array(batch.history @ self.similarity_)

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


def _strongest_per_column(matrix: sp.csr_array, limit: int) -> sp.csr_array:
    """``matrix`` with each column's ``limit`` largest entries kept (ties: the lower row), the rest dropped."""
    coo = matrix.tocoo()
    order = np.lexsort((coo.row, -coo.data, coo.col))  # by column, then value descending, then row
    columns = coo.col[order]
    starts = np.searchsorted(columns, columns, side="left")  # first entry of each entry's column
    keep = order[np.arange(len(order)) - starts < limit]
    return sp.csr_array((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=matrix.shape)


def _row_dots(left: sp.csr_array, right: sp.csr_array, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``left[rows[i]] . right[columns[i]]`` for every ``i``: exact dot products of chosen pairs of rows."""
    if not len(rows):
        return np.zeros(0)
    return np.asarray(left[rows].multiply(right[columns]).sum(axis=1)).ravel()


def _top_k_sparse(similarity: sp.csr_array, k: int) -> sp.csr_array:
    """Keep the ``k`` largest positive entries of every row, ties at the ``k``-th by column index
    (:func:`top_n_per_row`, linear in the stored entries), so a user's neighbours do not depend on the users that
    share its block; ``similarity`` is a sparse product (no repeated entries, columns unsorted)."""
    columns, values = top_n_per_row(similarity, k, unique=True)
    keep = (columns >= 0) & (values > 0)
    rows = np.broadcast_to(np.arange(similarity.shape[0])[:, None], columns.shape)
    return sp.csr_array((values[keep], (rows[keep], columns[keep])), shape=similarity.shape)


class UserKNNRecommender(Recommender):
    """User-based collaborative filtering: the history of the ``k`` most similar users.

    Similarities are computed at recommend time, for one batch of users at a
    time against the fitted users (one sparse product ``batch @ users.T``),
    and only the top ``k`` positive ones per user are kept (a sparse per-row
    top-k, ties by user index).

    The product costs the sum, over a user's items, of the users of each item: on a popular item of a
    million-user shop, hundreds of thousands per user. So neighbours are searched in two steps once an item
    has more than ``max_item_users`` users: candidates are the users sharing an item with the user, where a
    popular item only counts its ``max_item_users`` users who weigh it most (their normalized rows' largest
    entries on it, the ones that add most to a cosine); the ``4 * k`` best candidates by that partial
    similarity are then scored exactly, and the top ``k`` kept. A shop whose items all have at most
    ``max_item_users`` users gets the exact neighbours in one step. The score of item ``j`` is the
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
        Users per similarity block, at most.
    max_block_entries : int, default 2 ** 26
        Most entries of a similarity block (``users in the batch x n_users``): with many fitted users a batch
        has fewer users (at 659,000 fitted users, 101 instead of 1,000), so a block and its masks stay near
        1 GB. Neither bound changes a score: each user's similarities are their own row.
    max_item_users : int or None, default 1000
        Users of an item through whom candidates are found (``None``: all, always exact). The product's cost
        per user is at most ``max_item_users`` times the user's items.
    random_state : int, optional
        Accepted for a uniform interface; the model is deterministic.

    Attributes
    ----------
    user_items_ : scipy.sparse.csr_array
        The confidence matrix the neighbours' rows are read from.
    normalized_ : scipy.sparse.csr_array
        Unit-norm (centred for ``pearson``) rows used for the similarities.
    index_ : scipy.sparse.csr_array
        ``(n_items, n_users)``: ``normalized_`` transposed, each item's row cut to its ``max_item_users``
        largest entries; the right side of the similarity product, built once (not per batch).
    exact_ : bool
        Whether ``index_`` holds every entry (no item has more users): the search is exact in one step.
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
        max_block_entries: int = 2**26,
        max_item_users: int | None = 1000,
        random_state: int | None = None,
    ) -> None:
        self.k = k
        self.similarity = similarity
        self.event_weights = event_weights
        self.half_life_days = half_life_days
        self.fallback = fallback
        self.batch_size = batch_size
        self.max_block_entries = max_block_entries
        self.max_item_users = max_item_users
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
        if self.k < 1 or self.batch_size < 1 or (self.max_item_users is not None and self.max_item_users < 1):
            raise ValueError("k, batch_size and max_item_users must be at least 1")
        reference = self._reference(interactions, reference_time)
        until = np.nextafter(reference, np.inf)
        self.user_items_ = interactions.to_csr(
            self.event_weights, self.half_life_days, reference, end=until, dtype=np.float64
        )
        self.normalized_ = _normalized_rows(self.user_items_, center=self.similarity == "pearson")
        item_users = np.bincount(self.normalized_.indices, minlength=interactions.n_items)
        limit = self.max_item_users
        self.exact_ = limit is None or item_users.max(initial=0) <= limit
        index = self.normalized_ if self.exact_ else _strongest_per_column(self.normalized_, limit)
        self.index_ = sp.csr_array(index.T)
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
        similarity = sp.csr_array(normalized @ self.index_)
        entry_rows = np.repeat(np.arange(len(users)), np.diff(similarity.indptr))
        is_self = similarity.indices == users[entry_rows]
        similarity.data[is_self | (similarity.data < 1e-12)] = 0.0  # rounding noise of orthogonal rows
        similarity.eliminate_zeros()
        if self.exact_:
            return _top_k_sparse(similarity, self.k)
        candidates = _top_k_sparse(similarity, 4 * self.k)  # by the partial similarity
        rows = np.repeat(np.arange(len(users)), np.diff(candidates.indptr))
        exact_similarity = _row_dots(normalized, self.normalized_, rows, candidates.indices)
        candidates.data = np.where(exact_similarity < 1e-12, 0.0, exact_similarity)
        return _top_k_sparse(candidates, self.k)

    def _rows_per_batch(self, n_columns: int) -> int:
        # the similarity block is rows x n_users: the product of a batch of 1,000 users with the 659,000 users
        # of the L shop had about 600 million entries and a worker of train_and_evaluate went past 15 GB
        return max(1, min(self.batch_size, self.max_block_entries // max(self.n_users_, 1)))

    def _score_batch(self, batch: ScoreBatch) -> sp.csr_array:
        """The neighbours' similarity-weighted average of their rows: a sparse product."""
        neighbours = self.neighbours(batch.users, batch.history if batch.history_given else None)
        total = np.asarray(neighbours.sum(axis=1)).ravel()
        neighbours = sp.csr_array(sp.diags_array(1.0 / np.where(total > 0, total, 1.0)) @ neighbours)
        return sp.csr_array(neighbours @ self.user_items_)
