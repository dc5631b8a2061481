"""Placements: the shelves a shop shows, each a list of its own in ``recs.user_recommendations``.

============  ============================================================  =====================================
placement     what it lists                                                 its truth (evaluation and gate)
============  ============================================================  =====================================
``for_you``   the champion's list as served until now (any item)            every purchase in the window
``discover``  only items the user never bought (the ``new_items`` ranking)  purchases of items never bought before
``buy_again`` only items the user bought before                             repurchases
============  ============================================================  =====================================

Each placement has its own champion, gated on its own truth
(:func:`recsys.orchestration.training.champion_gate`). The API's ``placement`` parameter picks one;
:data:`ALIASES` keeps older names working (``home`` is ``for_you``). This module is the one home of the names
and of the restriction of a candidate list to a placement (:func:`restrict`), which both the evaluation and
the published lists use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the API imports the names only: numpy, scipy and the metrics load where lists are made
    import numpy as np
    import scipy.sparse as sp

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
    items: np.ndarray, scores: np.ndarray, bought: sp.csr_array, placement: str
) -> tuple[np.ndarray, np.ndarray]:
    """A placement's candidates from any model's list: drop the items the placement may not show, keep the order.

    Parameters
    ----------
    items, scores : numpy.ndarray
        ``(n_rows, width)`` candidates, best first, ``-1`` (score NaN) for none.
    bought : scipy.sparse.csr_array
        ``(n_rows, n_items)``: what each row's user bought before (any stored entry counts).
    placement : str
        ``for_you`` keeps every item, ``discover`` only items not in ``bought``, ``buy_again`` only those in it.

    Returns
    -------
    items, scores : numpy.ndarray
        Same shape: the kept candidates moved to the front in their order, ``-1``/NaN after them.
    """
    import numpy as np
    import scipy.sparse as sp

    from recsys.evaluation.metrics import hit_matrix

    if placement == FOR_YOU:
        return items, scores
    if placement not in (DISCOVER, BUY_AGAIN):
        raise ValueError(f"unknown placement {placement!r}")
    owned = hit_matrix(items, sp.csr_array(bought)) & (items >= 0)
    keep = (items >= 0) & (owned if placement == BUY_AGAIN else ~owned)
    order = np.argsort(~keep, axis=1, kind="stable")  # kept items first, in their order
    kept = np.take_along_axis(keep, order, axis=1)
    new_items = np.where(kept, np.take_along_axis(items, order, axis=1), -1)
    new_scores = np.where(kept, np.take_along_axis(np.asarray(scores, dtype=np.float64), order, axis=1), np.nan)
    return new_items.astype(np.int64), new_scores


def repurchases(truth: sp.csr_array, bought: sp.csr_array) -> sp.csr_array:
    """The ``buy_again`` truth: the items of ``truth`` the row's user had bought before.

    ``bought`` may have fewer columns than ``truth`` (items first seen in the window cannot have been bought).
    """
    import scipy.sparse as sp

    truth = sp.csr_array(truth)
    bought = sp.csr_array(bought)
    bought = sp.csr_array((bought.data, bought.indices, bought.indptr), shape=truth.shape)
    result = sp.csr_array(truth.multiply(bought != 0))
    result.eliminate_zeros()
    return result
