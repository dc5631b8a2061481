"""The evaluation windows of a run: one definition of its cutoffs, and the split of the events at one.

With ``end = data_interval_end``: models are tuned on ``[validation_cutoff, test_cutoff)`` after training
before ``validation_cutoff``, and evaluated on ``[test_cutoff, end)`` after training before ``test_cutoff``
(``[evaluation] test_days`` and ``validation_days`` of ``models.toml``, 7 each by default).
The ``new_catalogue`` variant scores a window against the purchases of items first sold in it
(:func:`first_sold_truth`) and counts how many of its new items (:func:`cold_items`) reach any list.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.features.interactions import EVENT_TYPES, SECONDS_PER_DAY, Interactions, Timestamp, to_epoch_seconds

logger = logging.getLogger(__name__)


class Cutoffs(NamedTuple):
    """Epoch seconds UTC of the run's evaluation boundaries."""

    validation: float
    test: float
    end: float


def cutoffs(config: dict[str, Any], data_interval_end: Timestamp) -> Cutoffs:
    """The validation and test cutoffs before ``data_interval_end`` from the ``[evaluation]`` section of ``config``."""
    evaluation = config.get("evaluation", {})
    end = to_epoch_seconds(data_interval_end)
    test = end - float(evaluation.get("test_days", 7)) * SECONDS_PER_DAY
    return Cutoffs(test - float(evaluation.get("validation_days", 7)) * SECONDS_PER_DAY, test, end)


@dataclass
class TimeSplit:
    """A train/test split by time, aligned to one encoding.

    Attributes
    ----------
    train : Interactions
        Events before the cutoff. Its users are the train users (sorted) and
        then the users who only appear in the test window (sorted), so those
        test users have empty train rows and get what a model gives cold
        users. Its items are those known at the cutoff: with train events, or listed
        before it (``items["listed_ts"]``) without any, as at serving.
    truth : scipy.sparse.csr_array
        Purchases in ``[cutoff, end)`` per user, shape ``(train.n_users,
        n_truth_items)``. Columns ``< train.n_items`` are train items; the
        items first seen in the test window follow, so they count in the
        recall denominator and can only be misses.
    truth_item_ids : numpy.ndarray
        Ids of the truth columns (train items first).
    test_users : numpy.ndarray
        Int64 indices of the users with at least one test purchase.
    cutoff, end : float
        The split times, epoch seconds.
    test_ratings : pandas.DataFrame, optional
        Ratings given in ``[cutoff, end)`` (columns of
        :attr:`Interactions.ratings`, indices in the train encoding; items
        first seen in the test window have indices ``>= train.n_items``).
    """

    train: Interactions
    truth: sp.csr_array
    truth_item_ids: np.ndarray
    test_users: np.ndarray
    cutoff: float
    end: float
    test_ratings: pd.DataFrame | None = None


def _reencode(old_index: np.ndarray, in_first: np.ndarray, in_second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order old codes: those in ``in_first`` (ascending), then those only in ``in_second``.

    Returns the new -> old table and the old -> new map (``-1`` for unused codes).
    """
    first = np.flatnonzero(in_first)
    second = np.flatnonzero(in_second & ~in_first)
    new_to_old = np.concatenate([first, second])
    old_to_new = np.full(len(old_index), -1, dtype=np.int64)
    old_to_new[new_to_old] = np.arange(len(new_to_old))
    return new_to_old, old_to_new


def time_split(interactions: Interactions, cutoff: Timestamp, end: Timestamp) -> TimeSplit:
    """Split events by time: train before ``cutoff``, truth = purchases in ``[cutoff, end)``.

    Parameters
    ----------
    interactions : Interactions
        Events up to at least ``end``.
    cutoff, end : timestamp
        The evaluation cutoff and the end of the test window.

    Returns
    -------
    TimeSplit
        See :class:`TimeSplit` for how users and items unseen in train are
        encoded.
    """
    cutoff_s, end_s = to_epoch_seconds(cutoff), to_epoch_seconds(end)
    if not cutoff_s < end_s:
        raise ValueError("cutoff must be before end")
    is_train = interactions.event_ts < cutoff_s
    is_test = (
        (interactions.event_ts >= cutoff_s)
        & (interactions.event_ts < end_s)
        & (interactions.event_type == EVENT_TYPES.index("purchase"))
    )

    def seen(index: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
        return np.bincount(index[mask], minlength=size) > 0

    n_users, n_items = interactions.n_users, interactions.n_items
    train_users = seen(interactions.user_index, is_train, n_users)
    listed = None if interactions.items is None else interactions.items.get("listed_ts")
    listed = np.zeros(n_items, bool) if listed is None else pd.to_numeric(listed, errors="coerce").to_numpy() < cutoff_s
    train_items = seen(interactions.item_index, is_train, n_items) | listed
    test_users = seen(interactions.user_index, is_test, n_users)
    test_items = seen(interactions.item_index, is_test, n_items)
    user_new_to_old, user_old_to_new = _reencode(interactions.user_ids, train_users, test_users)
    item_new_to_old, item_old_to_new = _reencode(interactions.item_ids, train_items, test_items)
    n_train_items = int(train_items.sum())

    train = Interactions(
        user_ids=interactions.user_ids[user_new_to_old],
        item_ids=interactions.item_ids[item_new_to_old[:n_train_items]],
        user_index=user_old_to_new[interactions.user_index[is_train]].astype(np.int32),
        item_index=item_old_to_new[interactions.item_index[is_train]].astype(np.int32),
        event_type=interactions.event_type[is_train],
        event_ts=interactions.event_ts[is_train],
        follows=interactions.follows,
        profile_source=interactions.profile_source,  # the dbt profile, read at the rankers' own moments
    )
    if interactions.items is not None:
        train.items = interactions.items.iloc[item_new_to_old[:n_train_items]].reset_index(drop=True)
    if interactions.users is not None:
        train.users = interactions.users.iloc[user_new_to_old].reset_index(drop=True)
    test_ratings = None
    if interactions.ratings is not None:
        ratings = interactions.ratings.assign(
            user_index=user_old_to_new[interactions.ratings["user_index"].to_numpy()],
            item_index=item_old_to_new[interactions.ratings["item_index"].to_numpy()],
        )
        rated_ts = ratings["rated_ts"].to_numpy()
        known = (ratings["user_index"].to_numpy() >= 0) & (ratings["item_index"].to_numpy() >= 0)
        train_known = known & (ratings["item_index"].to_numpy() < n_train_items) & (rated_ts < cutoff_s)
        train.ratings = ratings[train_known].astype({"user_index": np.int32, "item_index": np.int32})
        train.ratings = train.ratings.reset_index(drop=True)
        in_test = known & (rated_ts >= cutoff_s) & (rated_ts < end_s)
        test_ratings = ratings[in_test].astype({"user_index": np.int32, "item_index": np.int32}).reset_index(drop=True)
    truth = sp.coo_array(
        (
            np.ones(int(is_test.sum()), dtype=np.float32),
            (user_old_to_new[interactions.user_index[is_test]], item_old_to_new[interactions.item_index[is_test]]),
        ),
        shape=(len(user_new_to_old), len(item_new_to_old)),
    ).tocsr()
    truth.sum_duplicates()
    evaluated = np.flatnonzero(np.diff(truth.indptr) > 0).astype(np.int64)
    logger.info(
        "time split at %s: %d train events, %d test purchases by %d users (%d without train history), "
        "%d test items unseen in train",
        pd.Timestamp(cutoff_s, unit="s", tz="UTC"),
        train.n_events,
        int(is_test.sum()),
        len(evaluated),
        int((test_users & ~train_users).sum()),
        int((test_items & ~train_items).sum()),
    )
    return TimeSplit(
        train=train,
        truth=truth,
        truth_item_ids=interactions.item_ids[item_new_to_old],
        test_users=evaluated,
        cutoff=cutoff_s,
        end=end_s,
        test_ratings=test_ratings,
    )


def sample_users(interactions: Interactions, max_users: int, seed: int = 0) -> Interactions:
    """The events of every user, or of a sample of ``max_users`` of the users with events (``seed`` fixed).

    Same encoding: a :func:`time_split` of the sample keeps only the sampled users, so the models fitted on it
    grow with the sample, not with the shop (``[evaluation] search_users``).
    """
    users = np.unique(interactions.user_index)
    if len(users) <= max_users:
        return interactions
    sampled = np.zeros(interactions.n_users, dtype=bool)
    sampled[np.random.default_rng(seed).choice(users, max_users, replace=False)] = True
    logger.info("a sample of %d of the %d users with events", max_users, len(users))
    return interactions.select(sampled[interactions.user_index])


def first_sold_truth(train: Interactions, truth: sp.csr_array) -> sp.csr_array:
    """The ``new_catalogue`` truth: the purchases of ``truth`` of items first sold in the window.

    Parameters
    ----------
    train : Interactions
        The events before the cutoff (``TimeSplit.train``).
    truth : scipy.sparse.csr_array
        Purchases in the window, rows of any users, columns of ``TimeSplit.truth``
        (train items first, then the items first seen in the window).

    Returns
    -------
    scipy.sparse.csr_array
        ``truth`` without the items purchased before the cutoff (by anyone): what is
        left are train items never sold before and every item first seen in the window.
    """
    purchase = train.event_type == EVENT_TYPES.index("purchase")
    sold = np.zeros(truth.shape[1], dtype=bool)
    sold[: train.n_items] = np.bincount(train.item_index[purchase], minlength=train.n_items) > 0
    result = sp.csr_array(sp.csr_array(truth) @ sp.diags_array((~sold).astype(np.float32)))
    result.eliminate_zeros()
    result.sort_indices()
    return result


def cold_items(train: Interactions) -> np.ndarray:
    """Item indices of ``train`` without any event before the cutoff: the new catalogue items of the window."""
    return np.flatnonzero(np.bincount(train.item_index, minlength=train.n_items) == 0).astype(np.int64)
