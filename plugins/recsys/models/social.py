"""People you follow bought this: a candidate source over the social graph (``analytics.user_follows``).

Written here, not taken from ``implicit``: it has no model that reads a graph between users.
"""

from __future__ import annotations

import logging
from typing import Self

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone

from recsys.features.interactions import SECONDS_PER_DAY, Interactions, Timestamp
from recsys.features.social import follow_matrix
from recsys.models.base import Recommender, ScoreBatch
from recsys.models.popularity import PopularityRecommender

logger = logging.getLogger(__name__)


class FriendsBoughtRecommender(Recommender):
    """The purchases of the people a user follows, recency-weighted, then popularity.

    A user's score for item ``j`` is ``sum over the people f they follow of sum over f's purchases of j of
    2 ** (-age_days / half_life_days)``, age at the fit's reference time. "Follow" is
    ``analytics.user_follows`` (follows, friends both ways, the referrer), made before the reference time,
    of people who allow personalization (:mod:`recsys.features.social`). A referred user who has not bought
    anything yet follows their referrer, so their list is the referrer's history: the cold start of a
    referred new user. Items no followed person bought, and users who follow nobody, are filled from
    popularity with score ``0.0``.

    Like :class:`~recsys.models.popularity.RepeatPurchaseRecommender`, scores come from the fitted data
    of ``user_indices``; explicit ``user_items`` rows are only read for ``exclude_seen``.

    Parameters
    ----------
    half_life_days : float, default 30.0
        A followed person's purchase ``half_life_days`` before the reference time counts half.
    follows_horizon_days : float, default 0.0
        Follows made up to this many days after the reference time count too (purchases never do). The
        new-user evaluation sets its test window: a referral is made at signup, part of the registration data
        the cold-start models read (:mod:`recsys.usecases.cold_start`).
    fallback : PopularityRecommender, optional
        Fills the rest of the list (cloned and fitted on the same data); default ``PopularityRecommender()``.
    random_state : int, optional
        Accepted for a uniform interface; the model is deterministic.

    Attributes
    ----------
    follows_ : scipy.sparse.csr_array
        ``(n_users, n_users)`` 1 where the row user follows the column user.
    purchase_scores_ : scipy.sparse.csr_array
        Float64 ``(n_users, n_items)`` recency-weighted purchase counts.
    user_items_ : scipy.sparse.csr_array
        The users' full history (for ``exclude_seen``).
    fallback_ : PopularityRecommender
        The fitted fallback.
    reference_time_ : float
        The "now" of the fit, epoch seconds.
    n_users_, n_items_ : int
        Shape of the fitted data.
    """

    name = "friends_bought"
    fitted_users_only = True

    def __init__(
        self,
        half_life_days: float = 30.0,
        follows_horizon_days: float = 0.0,
        fallback: PopularityRecommender | None = None,
        random_state: int | None = None,
    ) -> None:
        self.half_life_days = half_life_days
        self.follows_horizon_days = follows_horizon_days
        self.fallback = fallback
        self.random_state = random_state

    def fit(self, interactions: Interactions, reference_time: Timestamp | None = None) -> Self:
        """Align the follows made before the reference time and weigh every purchase by its age.

        Parameters
        ----------
        interactions : Interactions
            Encoded events, with :attr:`~recsys.features.interactions.Interactions.follows` (none: every list
            is the popularity fill).
        reference_time : timestamp, optional
            "Now" of the decay and of the follows; defaults to the last event.

        Returns
        -------
        FriendsBoughtRecommender
            ``self``.
        """
        if self.half_life_days is None or self.half_life_days <= 0:
            raise ValueError("half_life_days must be positive")
        reference = self._reference(interactions, reference_time)
        until = np.nextafter(reference, np.inf)
        horizon = until + max(self.follows_horizon_days, 0.0) * SECONDS_PER_DAY
        self.follows_ = follow_matrix(interactions.follows, interactions.user_ids, horizon)
        self.purchase_scores_ = interactions.to_csr(
            {"purchase": 1.0}, self.half_life_days, reference, end=until, dtype=np.float64
        )
        self.user_items_ = interactions.to_csr(end=until)
        fallback = PopularityRecommender() if self.fallback is None else self.fallback
        self.fallback_ = clone(fallback).fit(interactions, reference)
        self.reference_time_ = reference
        self.n_users_, self.n_items_ = interactions.n_users, interactions.n_items
        logger.info(
            "friends_bought: %d follows of %d users", self.follows_.nnz, int((np.diff(self.follows_.indptr) > 0).sum())
        )
        return self

    def scores(self, user_indices: np.ndarray) -> sp.csr_array:
        """``(len(user_indices), n_items)`` the recency-weighted purchases of the people each user follows."""
        users = np.asarray(user_indices, dtype=np.int64)
        self._check_users(users)
        scores = sp.csr_array(self.follows_[users] @ self.purchase_scores_)
        scores.sum_duplicates()
        return scores

    def _score_batch(self, batch: ScoreBatch) -> sp.csr_array:
        return self.scores(batch.users)
