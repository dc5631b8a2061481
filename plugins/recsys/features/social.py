"""The social graph the models read: who sees whose purchases (``analytics.user_follows``), as a sparse matrix.

``analytics.user_follows`` (dbt) is the one definition of "people you follow": follow edges, friends both ways
and the referrer. Only followed people who allow personalization (``dim_users.is_personalization_allowed``)
are read: nobody's purchases reach another user's list or reason when they opted out. The frame is kept by
warehouse id on :attr:`recsys.features.interactions.Interactions.follows`, so it survives any re-encoding of
the users (a time split); :func:`follow_matrix` aligns it to an encoding, with only the follows made before
a time (evaluation never sees a follow made after its cutoff).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from psycopg2 import sql

from recsys.db import frames

logger = logging.getLogger(__name__)

#: columns of :attr:`Interactions.follows`
FOLLOW_COLUMNS = ("user_id", "followed_user_id", "followed_ts")


def read_follows(conn: Any, end: Any = None) -> pd.DataFrame | None:
    """The follows made before ``end`` (a timestamp; all when None) whose followed person allows personalization.

    Returns
    -------
    pandas.DataFrame or None
        :data:`FOLLOW_COLUMNS` (``followed_ts`` float64 epoch seconds); None when the warehouse has no
        ``analytics.user_follows`` (built before social data existed).
    """
    if not frames.table_exists(conn, "analytics.user_follows"):
        return None
    from recsys.features.interactions import to_epoch_seconds  # here: interactions reads the follows with this

    before = sql.SQL("follows.followed_at < to_timestamp({})").format(sql.Literal(end and to_epoch_seconds(end)))
    query = sql.SQL(
        "select follows.user_id, follows.followed_user_id,"
        " extract(epoch from follows.followed_at)::float8 as followed_ts"
        " from analytics.user_follows as follows inner join analytics.dim_users as followed"
        " on follows.followed_user_id = followed.user_id where followed.is_personalization_allowed and {}"
    ).format(sql.SQL("true") if end is None else before)
    follows = frames.read_frame(conn, query, dtype={"user_id": str, "followed_user_id": str, "followed_ts": float})
    logger.info("read %d follows of %d users", len(follows), follows["user_id"].nunique())
    return follows


def follow_matrix(follows: pd.DataFrame | None, user_ids: np.ndarray, before: float = np.inf) -> sp.csr_array:
    """``(n, n)`` float64, 1 where the row user follows the column user (``user_ids`` order), made before ``before``.

    Follows of or to users outside ``user_ids`` are dropped; no follows (None) give an empty matrix.
    """
    n = len(user_ids)
    if follows is None or follows.empty:
        return sp.csr_array((n, n), dtype=np.float64)
    index = pd.Index(user_ids)
    rows = index.get_indexer(follows["user_id"])
    cols = index.get_indexer(follows["followed_user_id"])
    keep = (rows >= 0) & (cols >= 0) & (rows != cols) & (follows["followed_ts"].to_numpy(dtype=np.float64) < before)
    matrix = sp.csr_array((np.ones(int(keep.sum())), (rows[keep], cols[keep])), shape=(n, n))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix
