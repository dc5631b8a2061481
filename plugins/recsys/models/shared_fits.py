"""Work the learned rankers of one run share: each candidate fit and training set computed once per cutoff.

The neural ranker and the LightGBM ranker (:mod:`recsys.models.ranker`,
:mod:`recsys.models.lgbm_ranker`), and every search trial of either, fit the
same candidate models on the same events before the same cutoffs, and build
the same candidate and feature frames from them; they differ in the learner
only. Inside a :func:`shared_fits` block a ranker takes those from
:func:`cached`: the first ranker computes them, the next ones with the same
data, cutoff and parameters get the same arrays. The computation is the same
deterministic code either way, so a run's results are byte-identical with and
without the block; outside a block nothing is kept.

An entry is keyed by the data object itself (the entry holds it, so its
identity cannot be reused while the block lasts) and by a hashable key of the
cutoff and the parameters that decide the value. A block keeps, per kind of
entry, the most recently used ones: one fit (the training pairs with the
profile at the reference time, :func:`shared_fit`) and ``max_frames`` candidate
frames (those of the last batches of users scored, :func:`shared_frame`). A fit
never makes way for a frame, so a second ranker scoring more batches than the
block keeps still reuses the first one's fit; the memory stays about one
ranker's worth whatever the number of trials.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import numpy as np
from sklearn.base import BaseEstimator

logger = logging.getLogger(__name__)

T = TypeVar("T")


class FitCache:
    """The entries of one :func:`shared_fits` block, least recently used first.

    Attributes
    ----------
    limits : dict of str to int
        Entries kept at most per kind (the first element of a key); a kind not listed keeps one.
    hits, misses : dict of str to int
        Per kind of entry (the first element of its key), values served from the cache and computed.
    """

    def __init__(self, limits: dict[str, int]) -> None:
        self.limits = limits
        self.entries: OrderedDict[tuple[int, Hashable], tuple[object, Any]] = OrderedDict()
        self.hits: dict[str, int] = {}
        self.misses: dict[str, int] = {}

    def get(self, data: object, key: tuple[Hashable, ...], compute: Callable[[], T]) -> T:
        """The value for ``data`` and ``key``: the kept one, else ``compute()`` (then kept)."""
        slot = (id(data), key)
        kind = str(key[0])
        if slot in self.entries:
            self.entries.move_to_end(slot)
            self.hits[kind] = self.hits.get(kind, 0) + 1
            return self.entries[slot][1]
        self.misses[kind] = self.misses.get(kind, 0) + 1
        value = compute()
        self.entries[slot] = (data, value)
        same_kind = [other for other in self.entries if other[1][0] == key[0]]  # a few entries at most
        for other in same_kind[: max(len(same_kind) - self.limits.get(kind, 1), 0)]:  # the least recent first
            del self.entries[other]
        return value

    def clear(self) -> None:
        """Forget every entry (the counts stay)."""
        self.entries.clear()


_ACTIVE: ContextVar[FitCache | None] = ContextVar("recsys_shared_fits", default=None)


@contextmanager
def shared_fits(max_frames: int = 4) -> Iterator[FitCache]:
    """Share the rankers' candidate fits and training sets inside the block (see the module docstring).

    Parameters
    ----------
    max_frames : int, default 4
        Candidate frames kept at most (the least recently used one goes first); one fit is kept.

    Yields
    ------
    FitCache
        The block's cache (its ``hits`` and ``misses`` tell what was shared).
    """
    cache = FitCache({"fit": 1, "frame": max_frames})
    token = _ACTIVE.set(cache)
    try:
        yield cache
    finally:
        _ACTIVE.reset(token)
        if cache.hits or cache.misses:
            logger.info("shared fits: computed %s, reused %s", cache.misses, cache.hits)
        cache.clear()


def frames_for(n_users: int, batch_size: int) -> int:
    """``max_frames`` for a block whose rankers each score ``n_users`` in batches of ``batch_size``: two per batch
    (the next ranker finds every frame of the first one's pass, with room for other sets of the same users), at
    least 4. With 4 and the 10 batches of 50,000 validation users, each ranker computed every frame again."""
    return max(4, 2 * -(-n_users // max(batch_size, 1)))


def cached(data: object, key: tuple[Hashable, ...], compute: Callable[[], T]) -> T:
    """``compute()``, or inside a :func:`shared_fits` block the value already computed for ``data`` and ``key``.

    Parameters
    ----------
    data : object
        What the value is computed from (compared by identity).
    key : tuple
        Hashable; its first element names the kind of value (for the counts),
        the rest must include everything else the value depends on.
    compute : callable
        Computes the value; must be deterministic and its result never changed in place by a caller.
    """
    cache = _ACTIVE.get()
    return compute() if cache is None else cache.get(data, key, compute)


def shared_fit(ranker: BaseEstimator, data: object, reference: float, compute: Callable[[], T], kind: str = "fit") -> T:
    """A learned ranker's training pairs and profile at ``reference`` (``kind`` ``fit``), or its profile alone
    (``profile``, a refit of the candidates): shared by the rankers that differ in the learner.

    The key is the ranker's parameters but ``candidate_models`` (its candidates' own parameters instead)
    and its class's ``learner_params``, so a ranker with other candidates, label weeks or pairs computes its own.
    """
    params = ranker.get_params(deep=False)
    candidates = params.pop("candidate_models") or ()
    shared = sorted((name, value) for name, value in params.items() if name not in ranker.learner_params)
    return cached(data, (kind, reference, params_key(candidates), repr(shared)), compute)


def shared_frame(
    profile: object,
    users: np.ndarray,
    filter_items: np.ndarray | None,
    pairs: Callable[[object, np.ndarray, np.ndarray | None], tuple[np.ndarray, ...]],
) -> tuple[np.ndarray, ...]:
    """``pairs(profile, users, filter_items)`` made read-only: the candidate frame of those users, shared."""
    key = ("frame", array_key(users), None if filter_items is None else array_key(filter_items))
    return cached(profile, key, lambda: read_only(*pairs(profile, users, filter_items)))


def array_key(array: np.ndarray) -> str:
    """A short hashable key of an array's values, dtype and shape (a digest, so keys stay small)."""
    array = np.ascontiguousarray(array)
    digest = hashlib.blake2b(array.tobytes(), digest_size=16)
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    return digest.hexdigest()


def read_only(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """The arrays, made read-only: a shared value must not be changed in place by one of its users."""
    for array in arrays:
        array.flags.writeable = False
    return arrays


def params_key(estimators: Sequence[BaseEstimator]) -> tuple[tuple[str, str], ...]:
    """A hashable key of estimators: each one's class and parameters (nested ones included)."""
    return tuple(
        (type(estimator).__qualname__, repr(sorted(estimator.get_params(deep=True).items())))
        for estimator in estimators
    )
