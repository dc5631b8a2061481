"""Matrix factorization: implicit-feedback ALS (``implicit``) and explicit-rating SVD."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from sklearn.base import clone
from threadpoolctl import threadpool_limits

from recsys.features.interactions import Interactions, Timestamp, to_epoch_seconds
from recsys.models.base import Recommender, ScoreBatch
from recsys.models.popularity import PopularityRecommender

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ItemFactors:
    """An ALS fit's item factors by item id: what a later fit with the same parameters starts from."""

    item_ids: np.ndarray
    factors: np.ndarray  # float32 (len(item_ids), factors)

    def rows_for(self, item_ids: np.ndarray, random_state: np.random.Generator) -> np.ndarray:
        """The factors of ``item_ids`` in their order; an item the fit did not have gets ``implicit``'s random
        start (uniform in [0, 0.01))."""
        position = pd.Index(self.item_ids).get_indexer(item_ids)
        rows = random_state.random((len(item_ids), self.factors.shape[1]), dtype=np.float32) * 0.01
        known = position >= 0
        rows[known] = self.factors[position[known]]
        return rows


def fit_warm(
    model: Recommender, interactions: Interactions, reference_time: Timestamp, warm_start: Mapping[str, ItemFactors]
) -> Recommender:
    """``model`` fitted; an ALS whose :meth:`~ALSRecommender.warm_start_key` is in ``warm_start`` starts from
    those item factors (an incremental run's refit from the full run's)."""
    if isinstance(model, ALSRecommender) and model.warm_start_key() in warm_start:
        return model.fit(interactions, reference_time, warm_start=warm_start[model.warm_start_key()])
    return model.fit(interactions, reference_time)


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
    dense_limit : int, default 2 ** 24
        Largest ``users x items`` score block :meth:`recommend` builds (with its top-n selection about three
        arrays of 8 bytes per entry: 0.4 GB); at least one user per block. A fixed count of users (2,000 of
        the L shop's 98,000 items) made 4.7 GB blocks.
    num_threads : int, default 0
        ``implicit``'s threads (0 = all cores).
    random_state : int, optional
        Seed of the factor initialization.
    warm_start_iterations : int, default 3
        ALS sweeps of a fit started from earlier item factors (``fit(..., warm_start=...)``).

    Attributes
    ----------
    user_factors_, item_factors_ : numpy.ndarray
        Float32 ``(n_users, factors)`` and ``(n_items, factors)``.
    item_ids_ : numpy.ndarray
        The item id of each row of ``item_factors_`` (:meth:`item_factors`).
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
    fitted_users_only = True

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        iterations: int = 15,
        alpha: float = 2.0,
        event_weights: Mapping[str, float] | None = None,
        half_life_days: float | None = None,
        fallback: PopularityRecommender | None = None,
        dense_limit: int = 2**24,
        num_threads: int = 0,
        random_state: int | None = None,
        warm_start_iterations: int = 3,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.iterations = iterations
        self.alpha = alpha
        self.event_weights = event_weights
        self.half_life_days = half_life_days
        self.fallback = fallback
        self.dense_limit = dense_limit
        self.num_threads = num_threads
        self.random_state = random_state
        self.warm_start_iterations = warm_start_iterations

    def warm_start_key(self) -> str:
        """The key of this model's :class:`ItemFactors` among a run's stored learners: the factorization's
        parameters, so a fit starts only from factors of the same shape and objective."""
        names = ("factors", "regularization", "alpha", "event_weights", "half_life_days")
        return "als_item_factors " + json.dumps({name: getattr(self, name) for name in names}, sort_keys=True)

    def fit(
        self,
        interactions: Interactions,
        reference_time: Timestamp | None = None,
        warm_start: ItemFactors | None = None,
    ) -> Self:
        """Factorize the confidence matrix.

        Parameters
        ----------
        interactions : Interactions
            Encoded events; only those at or before ``reference_time`` count.
        reference_time : timestamp, optional
            "Now" of the decay; defaults to the last event.
        warm_start : ItemFactors, optional
            Item factors of an earlier fit with the same parameters (a full run's, for a daily refit): the fit
            starts from them (new items from ``implicit``'s random start, users solved from the items in the
            first sweep) and runs ``warm_start_iterations`` sweeps instead of ``iterations``.

        Returns
        -------
        ALSRecommender
            ``self``.
        """
        reference = self._reference(interactions, reference_time)
        until = np.nextafter(reference, np.inf)
        user_items = interactions.to_csr(self.event_weights, self.half_life_days, reference, end=until)
        iterations = self.iterations if warm_start is None else min(self.warm_start_iterations, self.iterations)
        with threadpool_limits(1, "blas"):  # implicit checks the BLAS threads when it is constructed
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=iterations,
                num_threads=self.num_threads,
                random_state=self.random_state,
            )
            if warm_start is not None:
                # the first sweep solves every user from these items, so the users' start does not matter
                model.item_factors = warm_start.rows_for(
                    interactions.item_ids, np.random.default_rng(self.random_state)
                )
                model.user_factors = np.zeros((interactions.n_users, self.factors), dtype=np.float32)
            model.fit(sp.csr_matrix(user_items), show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)
        self.item_ids_ = interactions.item_ids
        self.user_items_ = user_items
        fallback = PopularityRecommender() if self.fallback is None else self.fallback
        self.fallback_ = clone(fallback).fit(interactions, reference)
        self.reference_time_ = reference
        self.n_users_, self.n_items_ = interactions.n_users, interactions.n_items
        logger.info(
            "als: %d users x %d items, %d factors, %d iterations%s",
            self.n_users_,
            self.n_items_,
            self.factors,
            iterations,
            "" if warm_start is None else " from earlier item factors",
        )
        return self

    def item_factors(self) -> ItemFactors:
        """The fitted item factors by item id, for a later fit's ``warm_start``."""
        return ItemFactors(self.item_ids_, self.item_factors_)

    def _rows_per_batch(self, n_columns: int) -> int:
        return max(1, self.dense_limit // max(1, n_columns))

    def _score_batch(self, batch: ScoreBatch) -> np.ndarray:
        """``user_factors @ item_factors.T``; a user without history (in ``batch.history``) has no candidate."""
        scores = (self.user_factors_[batch.users] @ self.item_factors_.T).astype(np.float64)
        scores[np.diff(batch.history.indptr) == 0] = -np.inf  # cold: the popularity fill only
        return scores


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
    fitted_users_only = True

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

    def _scored_rows(self, users: np.ndarray, history: sp.csr_array) -> np.ndarray:
        return np.flatnonzero(self.user_rated_[users])  # users without ratings get the popularity fill

    def _candidate_items(self, filter_items: np.ndarray | None) -> np.ndarray:
        return np.flatnonzero(self.item_rated_ & ~self._blocked(filter_items))  # items nobody rated: the fill

    def _rows_per_batch(self, n_columns: int) -> int:
        return max(1, self.dense_limit // max(1, n_columns))

    def _score_batch(self, batch: ScoreBatch) -> np.ndarray:
        """The predicted ratings, unclipped (the ranking keeps the order past 5 stars)."""
        scores = self.global_mean_ + self.user_bias_[batch.users][:, None] + self.item_bias_[batch.items][None, :]
        scores += self.user_factors_[batch.users] @ self.item_factors_[batch.items].T
        return scores

    def _served_scores(self, ranked: np.ndarray) -> np.ndarray:
        return np.clip(ranked, 1.0, 5.0)  # the predicted rating
