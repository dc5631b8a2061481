"""Placements: the shelves a shop shows, each a list of its own in ``recs.user_recommendations``.

============  ============================================================  =====================================
placement     what it lists                                                 its truth (evaluation and gate)
============  ============================================================  =====================================
``for_you``   the champion's list as served until now (any item)            every purchase in the window
``discover``  only items the user never bought (the ``new_items`` ranking)  purchases of items never bought before
``buy_again`` only items the user bought before                             repurchases
============  ============================================================  =====================================

Each placement has its own champion, gated on its own truth
(:func:`recsys.evaluation.selection.gate_placements`). The API's ``placement`` parameter picks one;
:data:`ALIASES` keeps older names working (``home`` is ``for_you``). This module is the one home of the names
and of the restriction of a candidate list to a placement (:func:`restrict`), which both the evaluation and
the published lists use.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from recsys.serving.rules import BusinessRules

FOR_YOU, DISCOVER, BUY_AGAIN = "for_you", "discover", "buy_again"
#: every placement, in the order they are generated and documented
PLACEMENTS: tuple[str, ...] = (FOR_YOU, DISCOVER, BUY_AGAIN)
#: the placement of a request that names none, and of rows written before placements existed
DEFAULT = FOR_YOU
#: older names a request may use
ALIASES: dict[str, str] = {"home": FOR_YOU}


def resolve(name: str | None) -> str:
    """The placement a request names (``None``: :data:`DEFAULT`; an alias: its placement).

    Raises
    ------
    ValueError
        For an unknown name; the message lists the valid ones.
    """
    if name is None:
        return DEFAULT
    placement = ALIASES.get(name, name)
    if placement not in PLACEMENTS:
        valid = ", ".join([*PLACEMENTS, *(f"{alias} (= {target})" for alias, target in ALIASES.items())])
        raise ValueError(f"unknown placement {name!r}; valid placements: {valid}")
    return placement


def restrict(
    items: np.ndarray, scores: np.ndarray, bought: sp.csr_array, placement: str, extra: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A placement's candidates from any model's list: drop the items the placement may not show, keep the order.

    Parameters
    ----------
    items, scores : numpy.ndarray
        ``(n_rows, width)`` candidates, best first, ``-1`` (score NaN) for none.
    bought : scipy.sparse.csr_array
        ``(n_rows, n_items)``: what each row's user bought before (any stored entry counts).
    placement : str
        ``for_you`` keeps every item, ``discover`` only items not in ``bought``, ``buy_again`` only those in it.
    extra : numpy.ndarray, optional
        A side column of the same shape, moved along (its zero value where a row ran out).

    Returns
    -------
    items, scores, extra : numpy.ndarray
        Same shape: the kept candidates moved to the front in their order, ``-1``/NaN after them.
    """
    from recsys.evaluation.metrics import hit_matrix  # here: the API imports the names, not scikit-learn

    if placement == FOR_YOU:
        return items, scores, extra
    if placement not in (DISCOVER, BUY_AGAIN):
        raise ValueError(f"unknown placement {placement!r}")
    owned = hit_matrix(items, sp.csr_array(bought)) & (items >= 0)
    keep = (items >= 0) & (owned if placement == BUY_AGAIN else ~owned)
    order = np.argsort(~keep, axis=1, kind="stable")  # kept items first, in their order
    kept = np.take_along_axis(keep, order, axis=1)
    new_items = np.where(kept, np.take_along_axis(items, order, axis=1), -1)
    new_scores = np.where(kept, np.take_along_axis(np.asarray(scores, dtype=np.float64), order, axis=1), np.nan)
    if extra is not None:
        extra = np.where(kept, np.take_along_axis(extra, order, axis=1), np.zeros(1, dtype=extra.dtype)[0])
    return new_items.astype(np.int64), new_scores, extra


def repurchases(truth: sp.csr_array, bought: sp.csr_array) -> sp.csr_array:
    """The ``buy_again`` truth: the items of ``truth`` the row's user had bought before.

    ``bought`` may have fewer columns than ``truth`` (items first seen in the window cannot have been bought).
    """
    truth = sp.csr_array(truth)
    bought = sp.csr_array(bought)
    bought = sp.csr_array((bought.data, bought.indices, bought.indptr), shape=truth.shape)
    result = sp.csr_array(truth.multiply(bought != 0))
    result.eliminate_zeros()
    return result


def never_bought(truth: sp.csr_array, bought: sp.csr_array) -> sp.csr_array:
    """The ``discover`` truth: the items of ``truth`` the row's user had not bought before (``new_items``)."""
    truth = sp.csr_array(truth)
    result = sp.csr_array(truth - repurchases(truth, bought))
    result.eliminate_zeros()
    return result


def truths(truth: sp.csr_array, bought: sp.csr_array) -> dict[str, sp.csr_array]:
    """Each placement's truth from a window's purchases and what its users bought before the window."""
    return {FOR_YOU: truth, DISCOVER: never_bought(truth, bought), BUY_AGAIN: repurchases(truth, bought)}


def excluded(placement: str, recent: sp.csr_array, bought: sp.csr_array) -> sp.csr_array | None:
    """The purchases a placement's list may not show: ``for_you`` the rules' recent ones, ``discover`` every one.

    ``recent`` are the rules' recent purchases outside repeat-purchase categories
    (:func:`recsys.serving.rules.recent_purchases`), ``bought`` every purchase of the row's user; both
    ``(n_rows, n_items)``. ``buy_again`` excludes none (``None``): the rule keeps a just-bought item off the
    shelves of new things, and this shelf is where it belongs.
    """
    if placement == BUY_AGAIN:
        return None
    if placement == FOR_YOU:
        return recent
    union = sp.csr_array((sp.csr_array(recent) != 0) + (sp.csr_array(bought) != 0), dtype=np.float32)
    union.eliminate_zeros()
    return union


def shelf_rules(placement: str, rules: BusinessRules) -> BusinessRules:
    """The business rules of a placement: ``buy_again`` has no brand cap and no diversity re-rank (a shopper's
    own staples may share a brand or a category); the others the rules as they are."""
    return replace(rules, max_per_brand=0, diversity_strength=0.0) if placement == BUY_AGAIN else rules


def is_filled(placement: str) -> bool:
    """Whether a list the rules cut short is filled from popularity: not ``buy_again``, which holds only the
    shopper's own purchases (a short shelf rather than items never bought)."""
    return placement != BUY_AGAIN


def serve(
    layers: Any,
    placement: str,
    items: np.ndarray,
    scores: np.ndarray,
    n: int,
    rules: BusinessRules,
    recent: sp.csr_array,
    bought: sp.csr_array,
    ranking: np.ndarray,
    extra: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A placement's list as served, from any model's overfetched candidates of a batch of users.

    :func:`restrict` to the placement, then ``layers.serve`` (the one definition of a served list: rules,
    re-rank, cut to ``n``, fill from ``ranking``, monotone scores) with the placement's rules
    (:func:`shelf_rules`), exclusions (:func:`excluded`) and fill (:func:`is_filled`). ``recent`` and
    ``bought`` are the batch's rows. The evaluation scores these lists and the run publishes them.
    """
    items, scores, extra = restrict(items, scores, bought, placement, extra)
    fill = ranking if is_filled(placement) else ranking[:0]
    exclude = excluded(placement, recent, bought)
    return layers.serve(items, scores, n, shelf_rules(placement, rules), exclude, fill, extra=extra)
