"""Popularity and buy-again: the non-personalized baseline and the repeat-purchase model."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Self

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone

from recsys.features.interactions import SECONDS_PER_DAY, Interactions, Timestamp, weight_vector
from recsys.models.base import Recommender, ScoreBatch, fill_from_ranking, first_unexcluded, top_n_per_row

logger = logging.getLogger(__name__)


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
        """Most popular items, the same for every user unless ``exclude_seen``; see :meth:`Recommender.recommend`.

        Not the template: the list is a slice of the ranking (every other model's fill), scored by
        popularity, and the history is read only for ``exclude_seen`` or explicit ``user_items``.
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
    fitted_users_only = True

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

    def _score_batch(self, batch: ScoreBatch) -> sp.csr_array:
        """The users' recency-weighted purchase counts (sparse: only their own purchases are candidates)."""
        scores = sp.csr_array(self.purchase_scores_[batch.users])
        scores.sum_duplicates()
        return scores
