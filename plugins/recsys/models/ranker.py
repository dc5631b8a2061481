"""The learned rankers' shared machinery: candidates, profile features, training pairs and scoring.

:class:`CandidateRanker` holds what every learned ranker shares: the
candidates, the features, the training pairs and the scoring.
:class:`recsys.models.neural_ranker.NeuralRanker` learns with an MLP;
:class:`recsys.models.lgbm_ranker.LightGBMRanker` with LightGBM's lambdarank, over the same pairs.
Two stages, as in production recommenders:

1. **Candidates.** Every candidate model (popularity, buy-again, item-KNN, user-KNN, ALS, friends_bought)
   proposes its top ``candidates_per_model`` items per user; the union is the user's candidate set.
2. **Ranking.** A learned model (the MLP, or LightGBM) scores every
   (user, candidate) pair from features of four kinds:

   * candidate evidence: the reciprocal rank of the item in each model's list;
   * the profile as it stood at that moment, read from the dbt project, which defines it once: the
     user's interest share in the item's category, leaf and brand (the tags and decayed event weights of
     ``user_interest_tags``), their price level (decayed-weight mean of ``ln(1 + price)`` of their items)
     against the item's, their activity and recency (events, purchases, days since the last event);
   * the user's own history with the item, and how much their demographic segment (age band x gender of
     ``dim_users``) over-buys it;
   * the item: recent purchases and views, trend, age, price level.

The profile is neither re-derived here nor read from ``analytics.user_profiles``: those tables describe
the users as of the end of the run, test window included, so a ranker evaluated on that window would
see the answers. Every feature is built from the events before the moment it is used (the label
window's start when training, the cutoff when evaluating, "now" when publishing): the profile by the SQL
function ``analytics.user_profile_features_as_of`` at that moment, through the interactions'
:class:`~recsys.features.profile_source.ProfileSource` (:func:`recsys.features.profile_source.user_profile`);
the rest here, from the events before it. Interactions without a source (built without a warehouse, as
in unit tests and ``make bench``) leave the profile's columns at 0, with one warning.

Training is on an earlier window than scoring: with ``reference_time`` t,
the candidate models and features are fitted on events before
``t - label_days`` and the labels are the purchases in ``[t - label_days, t)``.
Negatives are the candidates the user did not buy (the pool the ranker orders
when serving, not random catalogue items, which would only teach it
popularity), subsampled uniformly to ``negatives_per_positive`` per positive.
The candidate models are then refitted on everything before t for scoring. Rankers that differ only in
the learner share all this inside :func:`recsys.models.shared_fits.shared_fits`.
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from typing import ClassVar, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import clone

from recsys.features.interactions import SECONDS_PER_DAY, Interactions, Timestamp, lookup
from recsys.features.profile_source import UserProfile, user_profile
from recsys.models import text_features
from recsys.models.base import Recommender, ScoreBatch
from recsys.models.factorization import ALSRecommender, ItemFactors, fit_warm
from recsys.models.knn import ItemKNNRecommender, UserKNNRecommender
from recsys.models.popularity import PopularityRecommender, RepeatPurchaseRecommender
from recsys.models.shared_fits import read_only, shared_fit, shared_frame
from recsys.models.workers import map_in_workers

logger = logging.getLogger(__name__)

#: features of a (user, item) pair besides the reciprocal rank per candidate model, in column order
PROFILE_FEATURES: tuple[str, ...] = (
    "user_item_weight",
    "user_item_purchases",
    "category_interest",
    "leaf_interest",
    "brand_interest",
    "price_gap",
    "abs_price_gap",
    "has_price_level",
    "user_events",
    "user_purchases",
    "user_recency_days",
    "segment_lift",
    "item_purchases_30d",
    "item_views_30d",
    "item_trend",
    "item_age_days",
    "item_log_price",
)

#: the features of :data:`PROFILE_FEATURES` that describe the item alone (kept with ``profile_features=False``)
ITEM_FEATURES: tuple[str, ...] = PROFILE_FEATURES[-5:]


#: names of the models a ranker takes candidates from when they are configured (see :func:`default_candidate_models`)
CANDIDATE_MODELS: tuple[str, ...] = (
    PopularityRecommender.name,
    RepeatPurchaseRecommender.name,
    ItemKNNRecommender.name,
    UserKNNRecommender.name,
    ALSRecommender.name,
    "friends_bought",  # recsys.models.social.FriendsBoughtRecommender: its reciprocal rank is the social feature
)


def default_candidate_models() -> list[Recommender]:
    """The candidate generators: every single model of the platform."""
    return [
        PopularityRecommender(),
        RepeatPurchaseRecommender(),
        ItemKNNRecommender(),
        UserKNNRecommender(),
        ALSRecommender(random_state=0),
    ]


def _codes(values: pd.Series | None, size: int) -> np.ndarray:
    """Integer codes of a string column (one code for everything when the column is missing)."""
    if values is None:
        return np.zeros(size, dtype=np.int64)
    return pd.factorize(values.to_numpy(), sort=True)[0].astype(np.int64)


def _one_hot(codes: np.ndarray, n_codes: int) -> sp.csr_array:
    return sp.csr_array((np.ones(len(codes)), (np.arange(len(codes)), codes)), shape=(len(codes), n_codes))


@dataclass
class _Profile:
    """Everything known at one moment that the features read: fitted candidate models and profile aggregates."""

    models: list[Recommender]
    user_item: sp.csr_array
    user_purchases: sp.csr_array
    #: the dbt profile at that moment (:mod:`recsys.features.profile_source`), None without a source or when
    #: read per scored batch of users (``read_user``: the moment of scoring, where only those users are needed)
    user: UserProfile | None
    segment_of_user: np.ndarray
    segment_lift: np.ndarray
    item_stats: np.ndarray
    item_category: np.ndarray
    #: the opt-in text features' aggregates (:mod:`recsys.models.text_features`), None when off
    item_terms: sp.csr_array | None = None
    user_terms: sp.csr_array | None = None
    category_sentiment: sp.csr_array | None = None
    read_user: Callable[[np.ndarray], UserProfile] | None = None

    def user_profile_of(self, users: np.ndarray) -> UserProfile | None:
        """The dbt profile with (at least) ``users`` read."""
        return self.user if self.read_user is None else self.read_user(np.unique(users))


def _profile(
    models: list[Recommender],
    interactions: Interactions,
    reference: float,
    half_life_days: float,
    text: bool = False,
    users: np.ndarray | None = None,
    warm_start: dict[str, ItemFactors] | None = None,
) -> _Profile:
    """Fit the candidate models, read the dbt profile (of ``users``; without them, of each scored batch later) and
    the item aggregates before ``reference``. An ALS candidate whose :meth:`~ALSRecommender.warm_start_key` is in
    ``warm_start`` starts from those item factors."""
    data = interactions.before(reference)
    fitted = [fit_warm(clone(model), data, reference, warm_start or {}) for model in models]
    n_users, n_items = data.n_users, data.n_items
    items = interactions.items
    price = np.full(n_items, np.nan) if items is None else items["price"].to_numpy(dtype=np.float64)
    log_price = np.log1p(np.where(price > 0, price, np.nan))
    source = interactions.profile_source
    read = None if source is None else partial(user_profile, source, data.user_ids, items, reference, half_life_days)
    user = None if read is None or users is None else read(users)
    read_later = read if users is None else None  # without users: read per scored batch

    user_item = data.to_csr(half_life_days=half_life_days, reference_time=reference, dtype=np.float64)
    purchases = data.to_csr({"purchase": 1.0}, dtype=np.float64)

    users = interactions.users
    segment = _codes(None if users is None else users["age_band"] + "|" + users["gender"], n_users)
    n_segments = int(segment.max(initial=0)) + 1
    segment_items = (_one_hot(segment, n_segments).T @ purchases).toarray()  # segments x items: a few rows
    overall = segment_items.sum(axis=0)
    segment_share = (segment_items + 1.0) / (segment_items.sum(axis=1, keepdims=True) + n_items)
    segment_lift = np.log(segment_share) - np.log((overall + 1.0) / (overall.sum() + n_items))

    purchase_code, view_code = 3, 0  # EVENT_TYPES order: view, cart, remove_from_cart, purchase

    def recent(code: int, days: float) -> np.ndarray:
        mask = (data.event_type == code) & (data.event_ts >= reference - days * SECONDS_PER_DAY)
        return np.bincount(data.item_index[mask], minlength=n_items).astype(np.float64)

    first_seen = np.full(n_items, np.inf)
    np.minimum.at(first_seen, data.item_index, data.event_ts)
    age = np.where(np.isfinite(first_seen), (reference - first_seen) / SECONDS_PER_DAY, 0.0)
    bought_30 = recent(purchase_code, 30)
    item_stats = np.column_stack(
        [
            np.log1p(bought_30),
            np.log1p(recent(view_code, 30)),
            (recent(purchase_code, 7) + 1.0) / (bought_30 + 4.0),
            np.log1p(age),
            np.nan_to_num(log_price, nan=np.nanmedian(log_price) if np.isfinite(log_price).any() else 0.0),
        ]
    )
    category = _codes(None if items is None else items["category"], n_items)
    return _Profile(
        models=fitted,
        user_item=user_item,
        user_purchases=purchases,
        user=user,
        segment_of_user=segment,
        segment_lift=segment_lift,
        item_stats=item_stats,
        item_category=category,
        **(text_features.aggregates(interactions, user_item, category, reference) if text else {}),
        read_user=read_later,
    )


def _user_columns(user: UserProfile | None, users: np.ndarray, items: np.ndarray, item_price: np.ndarray) -> list:
    """The dbt profile's features of the pairs: interest shares, price gap, activity (zeros without a profile)."""
    if user is None:
        return [np.zeros(len(users))] * 9
    user_price = user.log_price_level[users]
    has_price = np.isfinite(user_price)
    gap = np.where(has_price, item_price - np.nan_to_num(user_price), 0.0)
    recency = np.nan_to_num(user.days_since_last_event[users], nan=365.0)
    return [
        lookup(user.shares, users, user.item_category[items]),
        lookup(user.shares, users, user.item_leaf[items]),
        lookup(user.shares, users, user.item_brand[items]),
        gap,
        np.abs(gap),
        has_price.astype(np.float64),
        np.log1p(user.events[users]),
        np.log1p(user.purchases[users]),
        np.log1p(np.clip(recency, 0.0, 365.0)),
    ]


@cache
def _warn_without_profile_source() -> None:
    """Once per process: a fit without the warehouse has constant interest, price level and activity features."""
    logger.warning(
        "learned rankers: interactions without a profile source (no warehouse): the interest shares, price level "
        "and activity features are 0; load_interactions(..., side_data=True) attaches the dbt profile"
    )


class CandidateRanker(Recommender):
    """A learned re-ranking of the candidate models' lists with profile features (see the module docstring).

    The candidates, the features, the training pairs and the scoring are the same for every learned
    ranker; a subclass sets :attr:`name`, lists the shared parameters of
    :class:`~recsys.models.neural_ranker.NeuralRanker` (but its learner's) in its ``__init__`` (scikit-learn
    reads the parameters from the signature) and implements :meth:`_train` and :meth:`_predict`.

    Attributes
    ----------
    model_ : object or None
        The learner; ``None`` when there were no labels to train on (then the
        candidates are ordered by summed reciprocal rank).
    profile_ : _Profile
        Candidate models and aggregates fitted on everything before the reference time.
    fallback_ : PopularityRecommender
        Popularity at the reference time (fills short lists).
    feature_names_ : list of str
        Column names of the feature matrix.
    train_rows_, train_positives_ : int
        Size of the training sample.
    candidate_recall_ : float
        Share of the label purchases that were among the candidates.
    train_seconds_ : float
        Wall time of the learner's fit.
    """

    candidate_models: list[Recommender] | None
    candidates_per_model: int
    label_days: float
    label_windows: int
    min_label_users: int
    negatives_per_positive: int
    max_train_users: int
    half_life_days: float
    profile_features: bool
    text_features: bool
    batch_size: int
    random_state: int | None
    learner_params: ClassVar[tuple[str, ...]]  #: the learner's own parameters (the others decide the shared fits)

    @abstractmethod
    def _train(self, features: np.ndarray, target: np.ndarray, query: np.ndarray) -> object:
        """The learner fitted on the training pairs (``query``: one id per user and label window, contiguous)."""

    @abstractmethod
    def _predict(self, features: np.ndarray) -> np.ndarray:
        """Score of every pair by :attr:`model_`, in (0, 1], higher is better."""

    # ------------------------------------------------------------------ candidates and features

    def _candidates(
        self, profile: _Profile, users: np.ndarray, filter_items: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Union of the candidate lists: row (position in ``users``), item, reciprocal rank per model."""
        n_items = profile.user_item.shape[1]
        lists = []
        for model in profile.models:  # a handful of models, each scoring the whole batch
            items, _ = model.recommend(users, n=min(self.candidates_per_model, n_items), filter_items=filter_items)
            rows, ranks = np.nonzero(items >= 0)
            lists.append(sp.csr_array((1.0 / (ranks + 1.0), (rows, items[rows, ranks])), shape=(len(users), n_items)))
        union = sp.csr_array(sum(sp.csr_array(matrix != 0, dtype=np.float64) for matrix in lists))
        union.sum_duplicates()
        rows = np.repeat(np.arange(len(users), dtype=np.int64), np.diff(union.indptr))
        cols = union.indices.astype(np.int64)
        ranks = np.column_stack([lookup(matrix, rows, cols) for matrix in lists])
        return rows, cols, ranks

    def _features(self, profile: _Profile, users: np.ndarray, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        user = users[rows]
        columns = [
            np.log1p(lookup(profile.user_item, user, items)),
            np.log1p(lookup(profile.user_purchases, user, items)),
            *_user_columns(profile.user_profile_of(users), user, items, profile.item_stats[items, 4]),
            profile.segment_lift[profile.segment_of_user[user], items],
            *profile.item_stats[items].T,
        ]
        if profile.user_terms is not None:  # text_features: appended after the profile (dropped without it)
            match = text_features.text_match(profile.user_terms, profile.item_terms, user, items)
            columns += [match, lookup(profile.category_sentiment, user, profile.item_category[items])]
        return np.column_stack(columns)

    def _pairs(
        self, profile: _Profile, users: np.ndarray, filter_items: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, items, ranks = self._candidates(profile, users, filter_items)
        features = np.hstack([ranks, self._features(profile, users, rows, items)]).astype(np.float32)
        if not self.profile_features:
            item_columns = [ranks.shape[1] + PROFILE_FEATURES.index(name) for name in ITEM_FEATURES]
            features = features[:, [*range(ranks.shape[1]), *item_columns]]
        return rows, items, features

    def _training_pairs(
        self, interactions: Interactions, reference: float, models: list[Recommender]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, _Profile]:
        """Features, labels, query ids of the label windows before ``reference``; candidate recall; profile at it.

        A query is one user in one label window; its rows are contiguous (windows in turn, users in index order).
        The label windows and the profile at ``reference`` are independent moments: they are computed side by
        side (:mod:`recsys.models.workers`), each window sampling with its own seed.
        """
        day = self.label_days * SECONDS_PER_DAY
        ends = [reference - window * day for window in range(self.label_windows)]
        moments = [(window, end - day, end) for window, end in enumerate(ends)]
        moments = moments[: self._windows_needed(interactions, moments)]
        *windows, now = map_in_workers(
            partial(_moment, self, interactions, models), [*moments, (None, reference, reference)]
        )
        samples, positives, candidates_hit, queries = [], 0, 0, 0
        for features, target, rows, window_positives, window_users in filter(None, windows):
            positives += window_positives
            candidates_hit += int(target.sum())  # every positive is kept
            samples.append((features, target, queries + rows))
            queries += window_users
        recall = candidates_hit / positives if positives else float("nan")
        if not samples:
            return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64), recall, now
        return *read_only(*(np.concatenate([sample[part] for sample in samples]) for part in range(3))), recall, now

    def _windows_needed(self, interactions: Interactions, moments: list[tuple[int, float, float]]) -> int:
        """How many label windows, newest first, hold ``min_label_users`` users to train on (at least one)."""
        users = 0
        for taken, (_, start, end) in enumerate(moments, start=1):  # a few weeks
            labels = interactions.to_csr({"purchase": 1.0}, start=start, end=end)
            users += min(int(np.count_nonzero(np.diff(labels.indptr))), self.max_train_users)
            if users >= self.min_label_users:
                return taken
        return len(moments)

    # ------------------------------------------------------------------ fit and score

    def fit(self, interactions: Interactions, reference_time: Timestamp | None = None) -> Self:
        """Train the learner on the label windows before ``reference_time``, then refit the candidates up to it.

        Parameters
        ----------
        interactions : Interactions
            Encoded events, ideally with :attr:`~recsys.features.interactions.Interactions.items`,
            :attr:`~recsys.features.interactions.Interactions.users` and
            :attr:`~recsys.features.interactions.Interactions.profile_source` (without them the
            item price, segment and dbt profile features are constant).
        reference_time : timestamp, optional
            "Now"; defaults to the last event.

        Returns
        -------
        CandidateRanker
            ``self``.
        """
        reference = self._reference(interactions, reference_time)
        if self.profile_features and interactions.profile_source is None:
            _warn_without_profile_source()
        models = default_candidate_models() if self.candidate_models is None else list(self.candidate_models)
        features, target, query, self.candidate_recall_, self.profile_ = shared_fit(  # the same for every learner
            self, interactions, reference, lambda: self._training_pairs(interactions, reference, models)
        )
        self.model_, self.train_rows_, self.train_positives_, self.train_seconds_ = None, 0, 0, 0.0
        if target.any() and (~target).any():
            started = time.perf_counter()
            self.model_ = self._train(features, target, query)
            self.train_seconds_ = time.perf_counter() - started
            self.train_rows_, self.train_positives_ = len(target), int(target.sum())
        if self.model_ is None:
            logger.warning("%s: no purchases in the label window to train on; ranking by candidate ranks", self.name)
        return self._fitted(interactions, reference, models)

    def refit_candidates(
        self,
        interactions: Interactions,
        reference_time: Timestamp | None,
        learner: object,
        feature_names: list[str],
        warm_start: dict[str, ItemFactors] | None = None,
    ) -> Self:
        """Keep a learner trained earlier by a ranker with the same parameters; refit only the candidates and the
        profile at ``reference_time`` (what an incremental run does, :mod:`recsys.orchestration.schedule`).

        The learner maps a pair's features to a score; the candidates and the features read the events up to
        ``reference_time``. With the learner of :meth:`fit` at the same time, the lists are those of that fit.
        An ALS candidate starts from the item factors of ``warm_start`` with its key (the full run's).

        Raises
        ------
        ValueError
            ``feature_names`` (the earlier ranker's ``feature_names_``) differ from this ranker's features.
        """
        reference = self._reference(interactions, reference_time)
        models = default_candidate_models() if self.candidate_models is None else list(self.candidate_models)
        self.profile_ = shared_fit(  # two placements' rankers that differ in the learner share it
            self,
            interactions,
            reference,
            lambda: _profile(
                models, interactions, reference, self.half_life_days, self.text_features, warm_start=warm_start
            ),
            kind="profile",
        )
        self.model_, self.candidate_recall_ = learner, float("nan")
        self.train_rows_, self.train_positives_, self.train_seconds_ = 0, 0, 0.0
        self._fitted(interactions, reference, models)
        if feature_names != self.feature_names_:
            raise ValueError(f"{self.name}: the learner was trained on {feature_names}, not {self.feature_names_}")
        return self

    def _fitted(self, interactions: Interactions, reference: float, models: list[Recommender]) -> Self:
        """The fitted attributes besides the learner and the profile."""
        self.fallback_ = next(
            (model for model in self.profile_.models if isinstance(model, PopularityRecommender)),
            None,
        ) or PopularityRecommender().fit(interactions.before(reference), reference)
        profile = PROFILE_FEATURES if self.profile_features else ITEM_FEATURES
        text = text_features.TEXT_FEATURES if self.text_features and self.profile_features else ()
        self.feature_names_ = [f"rank_{model.name}" for model in models] + list(profile) + list(text)
        self.reference_time_ = reference
        self.n_users_, self.n_items_ = interactions.n_users, interactions.n_items
        self.user_items_ = self.profile_.user_item
        logger.info(
            "%s: %d training pairs (%d positives), candidate recall %.3f, fit %.1f s",
            self.name,
            self.train_rows_,
            self.train_positives_,
            self.candidate_recall_,
            self.train_seconds_,
        )
        return self

    def score_candidates(
        self, user_indices: np.ndarray, filter_items: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidate pairs of a batch of users and the ranker's score of each.

        Returns
        -------
        rows, items, scores : numpy.ndarray
            Position of the user in ``user_indices``, item index, score in (0, 1].
        """
        users = np.asarray(user_indices, dtype=np.int64)
        rows, items, features = shared_frame(self.profile_, users, filter_items, self._pairs)
        if self.model_ is None:
            scores = features[:, : len(self.profile_.models)].sum(axis=1) / len(self.profile_.models)
        else:
            scores = self._predict(features)
        return rows, items, np.maximum(scores.astype(np.float64), 1e-12)

    def _rows_per_batch(self, n_columns: int) -> int:
        return self.batch_size

    def _score_batch(self, batch: ScoreBatch) -> sp.csr_array:
        """The ranker's score of every candidate pair (sparse: the candidates are the stored entries).

        The features read the fitted history: explicit ``user_items`` rows only serve ``exclude_seen``.
        """
        rows, cols, scores = self.score_candidates(batch.users, batch.filter_items)
        return sp.csr_array((scores, (rows, cols)), shape=(len(batch.users), self.n_items_))


def _moment(
    ranker: CandidateRanker,
    interactions: Interactions,
    models: list[Recommender],
    moment: tuple[int | None, float, float],
) -> tuple | _Profile | None:
    """One moment of a ranker's fit: a label window's sampled pairs, or (window None) the profile for scoring.

    A window ``(window, start, end)`` gives the kept pairs' features, labels and rows (users' positions among
    the window's label users), the window's purchases and its number of label users; None without labels or
    without earlier events. Negatives are subsampled with the seed ``(random_state, window)``.
    """
    window, start, end = moment
    if window is None:
        return _profile(models, interactions, start, ranker.half_life_days, ranker.text_features)
    labels = interactions.to_csr({"purchase": 1.0}, start=start, end=end)
    label_users = np.flatnonzero(np.diff(labels.indptr) > 0)
    if not len(label_users) or not (interactions.event_ts < start).any():
        return None
    rng = np.random.default_rng(None if ranker.random_state is None else (ranker.random_state, window))
    if len(label_users) > ranker.max_train_users:
        label_users = np.sort(rng.choice(label_users, ranker.max_train_users, replace=False))
    then = _profile(models, interactions, start, ranker.half_life_days, ranker.text_features, label_users)
    rows, items, features = ranker._pairs(then, label_users, None)
    target = lookup(labels, label_users[rows], items) > 0
    keep_share = min(1.0, ranker.negatives_per_positive * target.sum() / max(int((~target).sum()), 1))
    keep = target | (rng.random(len(target)) < keep_share)
    return features[keep], target[keep], rows[keep], labels[label_users].nnz, len(label_users)
