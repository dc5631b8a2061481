"""Recommenders for users without events: segment popularity and demographics -> category profile -> items.

A user who registered but has no events yet is described only by their
demographics (:data:`DEMOGRAPHICS` of ``analytics.dim_users``). Two estimators
rank items for them:

* :class:`SegmentPopularityRecommender` (``segment_popularity``): item
  popularity within the user's ``age_band|gender`` segment, global popularity
  for segments with fewer than ``min_segment_users`` users with events in
  the popularity window (k-anonymity).
* :class:`DemographicRecommender` (``cold_start_demographic``): a ridge
  regression (scikit-learn, multi-output) from one-hot demographics of the
  established users to their profile, the share of their interactions per
  top-level category. A new user's predicted shares reweight the items'
  within-category popularity; the result is mixed with their segment's
  popularity where that segment is k-anonymous.

Nothing here builds a dense users x items matrix: users with the same
demographics share one list, and the distinct profiles are scored in blocks
of bounded size over the items with recent events. The new-user evaluation
and the served lists are :mod:`recsys.usecases.cold_start`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.linear_model import Ridge
from sklearn.preprocessing import OneHotEncoder

from recsys.features.interactions import Interactions, Timestamp
from recsys.models.base import Recommender, fill_from_ranking, top_n_dense, top_n_per_row
from recsys.models.popularity import PopularityRecommender

logger = logging.getLogger(__name__)

#: registration attributes the models read (``unknown`` when missing)
DEMOGRAPHICS: tuple[str, ...] = ("age_band", "gender", "region", "platform", "signup_channel")
#: attributes of a published segment: ``segment_key`` is ``<age_band>|<gender>``
SEGMENT_COLUMNS: tuple[str, ...] = ("age_band", "gender")
#: cells (profiles x candidate items) scored at once
_BLOCK_CELLS = 5_000_000


def segment_keys(demographics: pd.DataFrame) -> np.ndarray:
    """``segment_key`` per row: ``<age_band>|<gender>``."""
    return (demographics["age_band"].astype(str) + "|" + demographics["gender"].astype(str)).to_numpy(dtype=object)


def with_demographics(interactions: Interactions, demographics: pd.DataFrame) -> Interactions:
    """``interactions`` with ``demographics`` (one row per user index, e.g. ``read_demographics``) as its users.

    Raises
    ------
    ValueError
        When ``demographics`` does not have one row per user of ``interactions``.
    """
    if len(demographics) != interactions.n_users:
        raise ValueError(f"demographics needs one row per user ({interactions.n_users}), got {len(demographics)}")
    return replace(interactions, users=demographics.reset_index(drop=True))


def demographics_of(interactions: Interactions) -> pd.DataFrame:
    """:data:`DEMOGRAPHICS` per user index of ``interactions`` (its ``users``; missing columns read ``unknown``)."""
    users = interactions.users
    return pd.DataFrame(
        {
            name: users[name].to_numpy(dtype=object)
            if users is not None and name in users
            else np.full(interactions.n_users, "unknown", dtype=object)
            for name in DEMOGRAPHICS
        }
    )


def _categories(interactions: Interactions) -> np.ndarray:
    """Top-level category code per item (unknown categories share one code)."""
    if interactions.items is None:
        return np.zeros(interactions.n_items, dtype=np.int64)
    return pd.factorize(interactions.items["category"].fillna(""), sort=True)[0].astype(np.int64)


def _distinct_rows(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """First row of every distinct row of ``frame`` and the distinct row of every row (vectorized)."""
    codes = np.column_stack([pd.factorize(frame[column])[0] for column in frame.columns])
    _, first, inverse = np.unique(codes, axis=0, return_index=True, return_inverse=True)
    return first, np.asarray(inverse).ravel()


class SegmentPopularityRecommender(Recommender):
    """Popularity within the ``age_band|gender`` segment, global popularity outside k-anonymous segments.

    Parameters
    ----------
    window_days : float or None, default 30
        Popularity window (see :class:`recsys.models.popularity.PopularityRecommender`).
    min_segment_users : int, default 50
        A segment is used only if at least this many of its users have events
        in the window (k-anonymity; ``unknown`` is a value like any other).
    event_weights : mapping of str to float, optional
        Weight per event type; default view 1, cart 3, purchase 5.
    random_state : int, optional
        Accepted for a uniform interface; the model is deterministic.

    Attributes
    ----------
    fallback_ : PopularityRecommender
        Global popularity over the window.
    demographics_ : pandas.DataFrame
        :data:`DEMOGRAPHICS` per fitted user (:func:`demographics_of` the interactions).
    user_items_ : scipy.sparse.csr_array
        The fitted users' history up to the reference time (what ``exclude_seen`` drops).
    segment_names_ : numpy.ndarray
        The k-anonymous segment keys, sorted.
    segment_users_ : numpy.ndarray
        Contributing users per segment of ``segment_names_``.
    segment_items_ : scipy.sparse.csr_array
        ``(n_segments, n_items)`` window popularity per segment.
    segment_of_user_ : numpy.ndarray
        Index into ``segment_names_`` per fitted user, ``-1`` outside them.
    n_users_, n_items_ : int
        Users and items of the fitted data.
    """

    name = "segment_popularity"

    def __init__(
        self,
        window_days: float | None = 30.0,
        min_segment_users: int = 50,
        event_weights: Mapping[str, float] | None = None,
        random_state: int | None = None,
    ) -> None:
        self.window_days = window_days
        self.min_segment_users = min_segment_users
        self.event_weights = event_weights
        self.random_state = random_state

    def fit(self, interactions: Interactions, reference_time: Timestamp | None = None) -> Self:
        """Count popularity globally and per segment.

        Parameters
        ----------
        interactions : Interactions
            Events; only those of the window up to ``reference_time`` count. The users' demographics are
            :attr:`Interactions.users` (see :func:`with_demographics`; missing ones read ``unknown``).
        reference_time : timestamp, optional
            "Now"; default the last event.

        Returns
        -------
        SegmentPopularityRecommender
            ``self``.
        """
        demographics = demographics_of(interactions)
        self.fallback_ = PopularityRecommender(window_days=self.window_days, event_weights=self.event_weights).fit(
            interactions, reference_time
        )
        window = self.fallback_.window_user_items_
        active = np.diff(window.indptr) > 0
        names, codes = np.unique(segment_keys(demographics).astype(str), return_inverse=True)
        contributors = np.bincount(codes[active], minlength=len(names))
        large = contributors >= self.min_segment_users
        self.segment_of_user_ = np.where(large, np.cumsum(large) - 1, -1)[codes]
        self.segment_names_ = names[large].astype(object)
        self.segment_users_ = contributors[large]
        members = np.flatnonzero(self.segment_of_user_ >= 0)
        indicator = sp.csr_array(
            (np.ones(len(members)), (self.segment_of_user_[members], members)),
            shape=(len(self.segment_names_), interactions.n_users),
        )
        self.segment_items_ = sp.csr_array(indicator @ window)
        self.demographics_ = demographics
        self.user_items_ = self.fallback_.user_items_
        self.n_users_, self.n_items_ = interactions.n_users, interactions.n_items
        logger.info(
            "%s: %d of %d segments have at least %d users with events",
            self.name,
            len(self.segment_names_),
            len(names),
            self.min_segment_users,
        )
        return self

    def segment_of(self, demographics: pd.DataFrame) -> np.ndarray:
        """Index into ``segment_names_`` per row, ``-1`` outside the k-anonymous segments."""
        position = pd.Index(self.segment_names_).get_indexer(segment_keys(demographics))
        return position.astype(np.int64)

    def recommend(
        self,
        user_indices: np.ndarray,
        user_items: sp.csr_array | None = None,
        n: int = 10,
        exclude_seen: bool = False,
        filter_items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` items per fitted user, from their demographics; see :meth:`Recommender.recommend`.

        Not the template: users share their profile's list (:meth:`recommend_demographics`); with
        ``exclude_seen`` it drops the user's history from that list, then fills from the global ranking.
        """
        users = np.asarray(user_indices, dtype=np.int64)
        history = self._history(users, user_items) if exclude_seen or user_items is not None else None
        self._check_users(users)
        people = self.demographics_.iloc[users]
        if not exclude_seen:
            return self.recommend_demographics(people, n, filter_items)
        # a shared list per profile: take enough to drop every user's history, then fill from the ranking
        width = n + int(np.diff(history.indptr).max(initial=0))
        items, scores = self.recommend_demographics(people, width, filter_items)
        rows, cols = np.nonzero(items >= 0)
        seen = np.zeros(items.shape, dtype=bool)
        seen[rows, cols] = history[rows, items[rows, cols]] != 0
        order = np.argsort(seen, axis=1, kind="stable")  # unseen first, in list order
        items = np.take_along_axis(np.where(seen, -1, items), order, axis=1)[:, :n]
        scores = np.take_along_axis(np.where(seen, np.nan, scores), order, axis=1)[:, :n]
        return fill_from_ranking(items, scores, self.fallback_.ranking(filter_items), self.n_items_, exclude=history)

    def recommend_demographics(
        self, demographics: pd.DataFrame, n: int = 10, filter_items: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` items per row of ``demographics``: their segment's list, else global popularity.

        Returns
        -------
        items, scores : numpy.ndarray
            ``(len(demographics), n)``; scores are the in-segment popularity
            (``0.0`` for items filled from the global ranking).
        """
        segment_items, segment_scores = self._segment_lists(n, filter_items)
        global_items, global_scores = self.fallback_.recommend(
            np.zeros(1, dtype=np.int64), n=n, filter_items=filter_items
        )
        items = np.vstack([segment_items, global_items])
        scores = np.vstack([segment_scores, global_scores])
        row = self.segment_of(demographics)
        pick = np.where(row >= 0, row, len(segment_items))  # the last row is the global list
        return items[pick], scores[pick]

    def _segment_lists(self, n: int, filter_items: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        blocked = self._blocked(filter_items)
        scores = self.segment_items_.copy()
        scores.data[blocked[scores.indices]] = 0.0
        scores.eliminate_zeros()
        items, values = top_n_per_row(scores, n)
        return fill_from_ranking(items, values, self.fallback_.ranking(filter_items), self.n_items_)

    def segment_recommend(
        self, n: int = 20, filter_items: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The list of every k-anonymous segment.

        Returns
        -------
        keys, items, scores : numpy.ndarray
            ``segment_names_`` and their ``(n_segments, n)`` lists.
        """
        items, scores = self._segment_lists(n, filter_items)
        return self.segment_names_, items, scores


class DemographicRecommender(SegmentPopularityRecommender):
    """Demographics -> category profile (ridge regression) -> items, mixed with segment popularity.

    Established users (events in the window) are one-hot encoded on
    :data:`DEMOGRAPHICS` plus ``age_band x gender``; levels held by fewer than
    ``min_segment_users`` of them are pooled as ``infrequent`` (k-anonymity and
    stable coefficients). A multi-output :class:`sklearn.linear_model.Ridge`
    maps them to each user's share of weighted events per top-level category,
    fitted on one row per distinct profile weighted by its users (the same
    solution as one row per user).
    A new user with predicted shares ``s`` (clipped at 0, renormalized) scores
    item ``i`` of category ``c`` as
    ``(1 - w) * s[c] * pop(i) / pop(c) + w * segment_pop(i) / segment_pop``
    with ``w = segment_weight`` in a k-anonymous segment and 0 elsewhere:
    global popularity reweighted by how much more or less than average the
    user's demographics like each category, pulled toward their segment's
    own popularity.

    Parameters
    ----------
    alpha : float, default 1.0
        Ridge penalty.
    segment_weight : float, default 0.5
        Weight of the segment popularity in the mixture (0: the regression only).
    window_days, min_segment_users, event_weights, random_state
        See :class:`SegmentPopularityRecommender`.

    Attributes
    ----------
    levels_ : dict of str to pandas.Index
        Per feature the levels held by at least ``min_segment_users`` established users.
    encoder_ : sklearn.preprocessing.OneHotEncoder
        The one-hot encoding of the pooled features.
    ridge_ : sklearn.linear_model.Ridge or None
        Demographics -> category shares (None with fewer than two established users).
    item_category_ : numpy.ndarray
        Category code per item.
    within_category_ : numpy.ndarray
        ``pop(i) / pop(c)`` per item (0 without window events).
    global_shares_ : numpy.ndarray
        Mean category share of the established users (fallback profile).
    """

    name = "cold_start_demographic"

    def __init__(
        self,
        alpha: float = 1.0,
        segment_weight: float = 0.5,
        window_days: float | None = 30.0,
        min_segment_users: int = 50,
        event_weights: Mapping[str, float] | None = None,
        random_state: int | None = None,
    ) -> None:
        super().__init__(window_days, min_segment_users, event_weights, random_state)
        self.alpha = alpha
        self.segment_weight = segment_weight

    def _features(self, demographics: pd.DataFrame) -> pd.DataFrame:
        """:data:`DEMOGRAPHICS` and age band x gender as strings, rare levels (``levels_``) read ``infrequent``."""
        frame = demographics[list(DEMOGRAPHICS)].astype(str).assign(age_band_gender=segment_keys(demographics))
        for column, levels in self.levels_.items():  # six columns
            frame[column] = frame[column].where(frame[column].isin(levels), "infrequent")
        return frame

    def fit(self, interactions: Interactions, reference_time: Timestamp | None = None) -> Self:
        """Fit segment popularity and the ridge regression from demographics to category shares.

        Parameters
        ----------
        interactions : Interactions
            Events with item side data (``items["category"]``); without it
            every item is one category and the model is segment popularity. The users' demographics
            are :attr:`Interactions.users` (see :func:`with_demographics`).
        reference_time : timestamp, optional
            "Now"; default the last event.

        Returns
        -------
        DemographicRecommender
            ``self``.
        """
        super().fit(interactions, reference_time)
        demographics = self.demographics_
        window = self.fallback_.window_user_items_
        self.item_category_ = _categories(interactions)
        n_categories = int(self.item_category_.max(initial=0)) + 1
        to_category = sp.csr_array(
            (np.ones(interactions.n_items), (np.arange(interactions.n_items), self.item_category_)),
            shape=(interactions.n_items, n_categories),
        )
        established = np.flatnonzero(np.diff(window.indptr) > 0)
        totals = (window @ to_category)[established].toarray()
        shares = totals / totals.sum(axis=1, keepdims=True)
        item_scores = self.fallback_.item_scores_
        category_scores = np.bincount(self.item_category_, weights=item_scores, minlength=n_categories)
        self.within_category_ = np.divide(
            item_scores,
            category_scores[self.item_category_],
            out=np.zeros(interactions.n_items),
            where=category_scores[self.item_category_] > 0,
        )
        self.global_shares_ = shares.mean(axis=0) if len(established) else np.full(n_categories, 1.0 / n_categories)
        self.levels_: dict[str, pd.Index] = {}
        self.ridge_ = None
        if len(established) < 2:  # nothing to learn from: every profile is the global one
            logger.warning("%s: %d users with events in the window, no regression", self.name, len(established))
            return self
        features = self._features(demographics.iloc[established])
        for column in features.columns:  # six columns: levels of fewer than k users are pooled (k-anonymity)
            counts = features[column].value_counts()
            self.levels_[column] = counts.index[counts >= self.min_segment_users]
        features = self._features(demographics.iloc[established])
        # users with the same demographics have the same features: one weighted row per distinct profile
        # (their mean shares, weighted by their count) has exactly the least-squares solution of all users
        first, profile = _distinct_rows(features)
        counts = np.bincount(profile, minlength=len(first)).astype(np.float64)
        indicator = sp.csr_array((np.ones(len(profile)), (profile, np.arange(len(profile)))))
        mean_shares = (indicator @ shares) / counts[:, None]
        self.encoder_ = OneHotEncoder(handle_unknown="ignore").fit(features.iloc[first])
        features = self.encoder_.transform(features.iloc[first])
        self.ridge_ = Ridge(alpha=self.alpha, random_state=self.random_state)
        self.ridge_.fit(features, mean_shares, sample_weight=counts)
        logger.info(
            "%s: ridge over %d established users (%d distinct profiles), %d one-hot features, %d categories",
            self.name,
            len(established),
            len(first),
            features.shape[1],
            n_categories,
        )
        return self

    def _predict(self, features: Any) -> np.ndarray:
        """The ridge's non-negative category shares, ``(n_rows, n_categories)`` even with one category.

        With a single target (a one-category catalogue) scikit-learn returns a 1-D array, one value per
        row: it is a column, not a row.
        """
        return np.clip(self.ridge_.predict(features).reshape(features.shape[0], -1), 0.0, None)

    def predict_shares(self, demographics: pd.DataFrame) -> np.ndarray:
        """Predicted category shares per row (non-negative, summing to 1).

        Returns
        -------
        numpy.ndarray
            Float64 ``(len(demographics), n_categories)``.
        """
        if self.ridge_ is None:
            return np.tile(self.global_shares_, (len(demographics), 1))
        shares = self._predict(self.encoder_.transform(self._features(demographics)))
        total = shares.sum(axis=1, keepdims=True)
        return np.where(total > 0, shares / np.where(total > 0, total, 1.0), self.global_shares_)

    def _score_profiles(
        self, shares: np.ndarray, segment: np.ndarray, n: int, filter_items: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` per profile (category shares and segment row), in blocks of bounded size."""
        blocked = self._blocked(filter_items)
        candidates = np.flatnonzero((self.fallback_.item_scores_ > 0) & ~blocked)
        segment_share = sp.csr_array(self.segment_items_[:, candidates])
        totals = np.asarray(self.segment_items_.sum(axis=1)).ravel()
        segment_share = sp.csr_array(sp.diags_array(1.0 / np.maximum(totals, 1e-300)) @ segment_share)
        weight = np.where(segment >= 0, float(self.segment_weight), 0.0)
        items = np.full((len(shares), n), -1, dtype=np.int64)
        scores = np.full((len(shares), n), np.nan)
        block = max(1, _BLOCK_CELLS // max(len(candidates), 1))
        within = self.within_category_[candidates]
        category = self.item_category_[candidates]
        for start in range(0, len(shares) if len(candidates) else 0, block):  # blocks of profiles, each vectorized
            rows = slice(start, start + block)
            dense = (1.0 - weight[rows, None]) * shares[rows][:, category] * within
            has_segment = np.flatnonzero(segment[rows] >= 0)
            if len(has_segment):
                dense[has_segment] += (
                    weight[rows][has_segment, None] * segment_share[segment[rows][has_segment]].toarray()
                )
            top, top_scores = top_n_dense(np.where(dense > 0, dense, -np.inf), n)
            items[rows] = np.where(top >= 0, candidates[np.maximum(top, 0)], -1)
            scores[rows] = top_scores
        return fill_from_ranking(items, scores, self.fallback_.ranking(filter_items), self.n_items_)

    def recommend_demographics(
        self, demographics: pd.DataFrame, n: int = 10, filter_items: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` items per row of ``demographics``; rows with the same demographics share one list.

        Returns
        -------
        items, scores : numpy.ndarray
            ``(len(demographics), n)``; scores are the mixture probabilities
            (``0.0`` for items filled from the global ranking).
        """
        if not len(demographics):
            return np.full((0, n), -1, dtype=np.int64), np.full((0, n), np.nan)
        first_row, inverse = _distinct_rows(self._features(demographics))
        profiles = demographics.iloc[first_row]
        items, scores = self._score_profiles(self.predict_shares(profiles), self.segment_of(profiles), n, filter_items)
        return items[inverse], scores[inverse]

    def segment_recommend(
        self, n: int = 20, filter_items: np.ndarray | None = None, demographics: pd.DataFrame | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The list of every k-anonymous segment from its users' mean predicted profile.

        The ridge model is linear, so the mean of the segment's predictions is
        the prediction at the mean one-hot vector of the segment's users (of
        ``demographics``, default the users the model was fitted on, :attr:`demographics_`).

        Returns
        -------
        keys, items, scores : numpy.ndarray
            ``segment_names_`` and their ``(n_segments, n)`` lists.
        """
        if demographics is None:
            demographics = self.demographics_
        segment = self.segment_of(demographics)
        members = np.flatnonzero(segment >= 0)
        n_segments = len(self.segment_names_)
        if self.ridge_ is None or not len(members):
            shares = np.tile(self.global_shares_, (n_segments, 1))
        else:
            features = self._features(demographics.iloc[members])
            first, profile = _distinct_rows(features)
            # users per (segment, distinct profile); the segment's mean one-hot vector from the profiles'
            indicator = sp.csr_array(
                (np.ones(len(members)), (segment[members], profile)), shape=(n_segments, len(first))
            )
            counts = np.maximum(indicator.sum(axis=1), 1.0)
            profiles = self.encoder_.transform(features.iloc[first])
            mean_features = sp.csr_array(sp.diags_array(1.0 / counts) @ indicator @ profiles)
            shares = self._predict(mean_features)
            total = shares.sum(axis=1, keepdims=True)
            shares = np.where(total > 0, shares / np.where(total > 0, total, 1.0), self.global_shares_)
        items, scores = self._score_profiles(shares, np.arange(n_segments), n, filter_items)
        return self.segment_names_, items, scores
