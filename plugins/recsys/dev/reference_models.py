"""Reference models the bench compares the platform's models against (not served): EASE and plain ``implicit`` ALS."""

from __future__ import annotations

import logging
from typing import Self

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack

from recsys.features.interactions import Interactions, Timestamp
from recsys.models.base import Recommender, top_n_dense

logger = logging.getLogger(__name__)


class EASERecommender(Recommender):
    """EASE: ``B = argmin ||X - XB||² + λ||B||²`` with ``diag(B) = 0``, in closed form (Steck 2019).

    ``G = XᵀX + λI``, ``P = G⁻¹``, ``B = -P / diag(P)`` (column-wise), ``diag(B) = 0``;
    a user's scores are ``x_u B``. ``X`` is the binary user x item matrix of
    the train events. Written here because no installed library implements it.

    Parameters
    ----------
    l2 : float, default 200.0
        The ridge penalty λ.
    batch_size : int, default 4096
        Users scored per dense block in :meth:`recommend`.
    random_state : int, optional
        Accepted for a uniform interface; the model is deterministic.

    Attributes
    ----------
    weights_ : numpy.ndarray
        Float32 ``(n_items, n_items)`` item-item weights ``B``.
    user_items_ : scipy.sparse.csr_array
        Binary history the model was fitted on.
    n_users_, n_items_ : int
        Shape of the fitted data.
    """

    name = "ref_ease"

    def __init__(self, l2: float = 200.0, batch_size: int = 4096, random_state: int | None = None) -> None:
        self.l2 = l2
        self.batch_size = batch_size
        self.random_state = random_state

    def fit(self, interactions: Interactions, reference_time: Timestamp | None = None) -> Self:
        """Solve for ``B`` on the events at or before ``reference_time``."""
        until = np.nextafter(self._reference(interactions, reference_time), np.inf)
        user_items = sp.csr_array(interactions.to_csr(end=until) > 0, dtype=np.float64)
        gram = (user_items.T @ user_items).toarray()
        gram[np.diag_indices_from(gram)] += self.l2
        # G is symmetric positive definite: invert through its Cholesky factor, in place
        factor, info = lapack.dpotrf(gram, lower=False, overwrite_a=True)
        if info == 0:
            upper, info = lapack.dpotri(factor, lower=False, overwrite_c=True)
        if info != 0:
            raise np.linalg.LinAlgError(f"EASE: Cholesky inverse failed (LAPACK info {info})")
        precision = np.triu(upper)
        precision += np.triu(upper, 1).T
        del gram, factor, upper
        precision /= -np.diag(precision)[None, :]
        precision[np.diag_indices_from(precision)] = 0.0
        self.weights_ = precision.astype(np.float32)
        self.user_items_ = sp.csr_array(user_items, dtype=np.float32)
        self.n_users_, self.n_items_ = interactions.n_users, interactions.n_items
        return self

    def recommend(
        self,
        user_indices: np.ndarray,
        user_items: sp.csr_array | None = None,
        n: int = 10,
        exclude_seen: bool = False,
        filter_items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items by ``x_u B``, scored in dense blocks of ``batch_size`` users."""
        users = np.asarray(user_indices, dtype=np.int64)
        history = self._history(users, user_items)
        blocked = self._blocked(filter_items)
        items = np.full((len(users), n), -1, dtype=np.int64)
        values = np.full((len(users), n), np.nan)
        for start in range(0, len(users), self.batch_size):  # blocks of users bound the dense scores
            rows = slice(start, start + self.batch_size)
            scores = np.asarray(history[rows] @ self.weights_)
            scores[:, blocked] = -np.inf
            if exclude_seen:
                block = sp.coo_array(history[rows])
                scores[block.row, block.col] = -np.inf
            items[rows], values[rows] = top_n_dense(scores, n)
        return items, values


class ImplicitALSRecommender(Recommender):
    """``implicit``'s ALS used the plain way: default confidences, its own batched ``recommend``.

    Parameters
    ----------
    factors : int, default 64
        Latent factors.
    iterations : int, default 15
        ALS sweeps.
    random_state : int, default 0
        Seed of the factor initialization.

    Attributes
    ----------
    model_ : implicit.cpu.als.AlternatingLeastSquares
        The fitted ``implicit`` model.
    user_items_ : scipy.sparse.csr_matrix
        The confidence matrix (view 1, cart 3, purchase 5) it was fitted on.
    n_users_, n_items_ : int
        Shape of the fitted data.
    """

    name = "ref_implicit_als"

    def __init__(self, factors: int = 64, iterations: int = 15, random_state: int | None = 0) -> None:
        self.factors = factors
        self.iterations = iterations
        self.random_state = random_state

    def fit(self, interactions: Interactions, reference_time: Timestamp | None = None) -> Self:
        """Fit ALS on the confidence matrix of the events at or before ``reference_time``."""
        from implicit.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        until = np.nextafter(self._reference(interactions, reference_time), np.inf)
        self.user_items_ = sp.csr_matrix(interactions.to_csr(end=until))
        with threadpool_limits(1, "blas"):  # implicit's own advice: its threads, single-threaded BLAS
            self.model_ = AlternatingLeastSquares(
                factors=self.factors, iterations=self.iterations, random_state=self.random_state
            )
            self.model_.fit(self.user_items_, show_progress=False)
        self.n_users_, self.n_items_ = interactions.n_users, interactions.n_items
        return self

    def recommend(
        self,
        user_indices: np.ndarray,
        user_items: sp.csr_array | None = None,
        n: int = 10,
        exclude_seen: bool = False,
        filter_items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One batched ``implicit`` ``recommend`` call for all users."""
        users = np.asarray(user_indices, dtype=np.int64)
        history = sp.csr_matrix(self._history(users, user_items))
        ids, scores = self.model_.recommend(
            users,
            history,
            N=n,
            filter_already_liked_items=exclude_seen,
            filter_items=None if filter_items is None else np.asarray(filter_items),
        )
        items = np.full((len(users), n), -1, dtype=np.int64)
        values = np.full((len(users), n), np.nan)
        items[:, : ids.shape[1]], values[:, : ids.shape[1]] = ids, scores
        gone = (items < 0) | ~np.isfinite(values)
        items[gone], values[gone] = -1, np.nan
        return items, values
