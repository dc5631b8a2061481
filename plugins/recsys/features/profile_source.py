"""The point-in-time user profile the learned rankers read from dbt, not a second implementation in numpy.

The dbt project defines the profile once: the macros ``decayed_user_items`` and ``user_tag_weights``
(``dbt_project/macros/profile.sql``) build the mart ``analytics.user_interest_tags`` and the SQL function
``analytics.user_profile_features_as_of(as_of, half_life_days)`` that the project's on-run-start hook
creates. The function sees only the events strictly before ``as_of``, so a ranker reading it at a label
window's start or an evaluation cutoff never sees the answers. Per user it gives the share of each interest
tag in the user's tags of its type (category, subcategory, brand), the price level (decayed-weight mean of
``ln(1 + price)`` of their items) and activity (events, purchases, days since the last event).

:class:`ProfileSource` is what :class:`~recsys.features.interactions.Interactions` carries to reach it:
the warehouse DSN and nothing else, so the interactions and the models fitted on them stay picklable for
the worker processes (:mod:`recsys.models.workers`); every read opens its own connection.
:func:`user_profile` reads it at one moment in the encoding of an :class:`Interactions`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import psycopg2.extensions
import scipy.sparse as sp
from psycopg2 import sql

from recsys.db import frames

logger = logging.getLogger(__name__)

#: the function the dbt hook creates (``user_profile_features_function`` in ``dbt_project/macros/profile.sql``)
FUNCTION_SIGNATURE = "analytics.user_profile_features_as_of(timestamptz, double precision, text[])"
PROFILE_SQL = sql.SQL(
    "select user_id, feature, value from analytics.user_profile_features_as_of(to_timestamp({}), {}, {}::text[])"
)

#: the user-level rows of the function (every other row is an interest tag ``<type>:<value>``)
ACTIVITY: tuple[str, ...] = ("log_price_level", "events", "purchases", "days_since_last_event")


@dataclass(frozen=True)
class ProfileSource:
    """Where the point-in-time profile is read: a warehouse DSN (never shown by ``repr``: it may hold a password).

    Attributes
    ----------
    dsn : str
        A libpq connection string or URL of the warehouse whose dbt project created the function.
    """

    dsn: str = field(repr=False)

    @classmethod
    def of(cls, connection: Any) -> ProfileSource | None:
        """The source of an open psycopg2 connection: its parameters and password (``connection.dsn`` masks it).

        None, logged, when the warehouse has no profile function (the dbt project's hooks never ran on it).
        """
        with connection.cursor() as cursor:
            cursor.execute("select to_regprocedure(%s) is not null", (FUNCTION_SIGNATURE,))
            if not cursor.fetchone()[0]:
                logger.warning("the warehouse has no %s: run dbt first; no profile source", FUNCTION_SIGNATURE)
                return None
        params = connection.get_dsn_parameters()  # every parameter (host, sslmode, options, ...) but the password
        if connection.info.password:
            params["password"] = connection.info.password
        return cls(psycopg2.extensions.make_dsn(**params))

    def read(self, reference: float, half_life_days: float, user_ids: np.ndarray | None = None) -> pd.DataFrame:
        """The function's rows at ``reference`` (epoch seconds): ``user_id``, ``feature``, ``value``.

        With ``user_ids``, only those users' (the function reads only their events: cheaper for a sample).
        """
        users = None if user_ids is None else np.asarray(user_ids).astype(str).tolist()
        query = PROFILE_SQL.format(*map(sql.Literal, (float(reference), float(half_life_days), users)))
        with frames.connection(self.dsn) as conn:  # its own connection, closed after the read
            return frames.read_frame(conn, query, dtype={"user_id": str, "feature": str, "value": np.float64})


@dataclass
class UserProfile:
    """The profile of the encoded users at one moment, as the rankers look it up.

    Attributes
    ----------
    shares : scipy.sparse.csr_array
        Users x tags: the share of each tag in the user's tags of its type; column 0 is "no tag" (always 0).
    item_category, item_leaf, item_brand : numpy.ndarray
        Column of ``shares`` of every item's category, leaf (its ``subcategory`` tag; the category when the
        leaf is the top level) and brand (0 when the item has none).
    log_price_level : numpy.ndarray
        Per user, NaN without priced items.
    events, purchases : numpy.ndarray
        Per user, 0 without events.
    days_since_last_event : numpy.ndarray
        Per user, NaN without events.
    """

    shares: sp.csr_array
    item_category: np.ndarray
    item_leaf: np.ndarray
    item_brand: np.ndarray
    log_price_level: np.ndarray
    events: np.ndarray
    purchases: np.ndarray
    days_since_last_event: np.ndarray


def item_tags(items: pd.DataFrame | None, n_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every item's category, leaf and brand tag as the dbt macro ``user_tag_weights`` names them ("" for none).

    The leaf is the last level of ``category_path`` (dbt's ``subcategory``); an item whose leaf is its top level
    has no ``subcategory`` tag in dbt, and its leaf interest is its category's.
    """
    if items is None:
        empty = np.full(n_items, "", dtype=object)
        return empty, empty, empty
    category = "category:" + items["category"].astype(str)
    leaf = items["category_path"].astype(str).str.rsplit(" > ", n=1).str[-1]
    leaf = ("subcategory:" + leaf).where((leaf != "") & (leaf != items["category"]), category)
    brand = ("brand:" + items["brand"].astype(str)).where(items["brand"] != "", "")
    return category.to_numpy(dtype=object), leaf.to_numpy(dtype=object), brand.to_numpy(dtype=object)


def user_profile(
    source: ProfileSource,
    user_ids: np.ndarray,
    items: pd.DataFrame | None,
    reference: float,
    half_life_days: float,
    users: np.ndarray | None = None,
) -> UserProfile:
    """Read the profile at ``reference`` and index it to an encoding.

    Parameters
    ----------
    source : ProfileSource
    user_ids : numpy.ndarray
        Warehouse id of every user index (:attr:`Interactions.user_ids`); users the warehouse does not know
        get no tags and no activity.
    items : pandas.DataFrame, optional
        :attr:`Interactions.items`: ``category``, ``category_path``, ``brand`` per item index.
    reference : float
        Epoch seconds; only events strictly before it count.
    half_life_days : float
        Decay of the event weights.
    users : numpy.ndarray, optional
        The user indices whose profile to read (the others' stays empty); default every user.

    Returns
    -------
    UserProfile
    """
    frame = source.read(reference, half_life_days, None if users is None else user_ids[users])
    n_users = len(user_ids)
    user = pd.Index(user_ids).get_indexer(frame["user_id"])
    frame = frame[user >= 0].assign(user=user[user >= 0])
    category, leaf, brand = item_tags(items, 0 if items is None else len(items))
    is_tag = ~frame["feature"].isin(ACTIVITY).to_numpy()
    named = pd.unique(np.concatenate([category, leaf, brand, frame["feature"].to_numpy(dtype=object)[is_tag]]))
    vocabulary = pd.Index(["", *named[named != ""]])  # "no tag" first: column 0
    tags = frame[is_tag]
    shares = sp.csr_array(
        (tags["value"].to_numpy(), (tags["user"].to_numpy(), vocabulary.get_indexer(tags["feature"]))),
        shape=(n_users, len(vocabulary)),
    )
    activity = frame[~is_tag].pivot(index="user", columns="feature", values="value").reindex(columns=list(ACTIVITY))
    activity = activity.reindex(np.arange(n_users))
    return UserProfile(
        shares=shares,
        item_category=vocabulary.get_indexer(category),
        item_leaf=vocabulary.get_indexer(leaf),
        item_brand=vocabulary.get_indexer(brand),
        log_price_level=activity["log_price_level"].to_numpy(dtype=np.float64),
        events=activity["events"].fillna(0.0).to_numpy(dtype=np.float64),
        purchases=activity["purchases"].fillna(0.0).to_numpy(dtype=np.float64),
        days_since_last_event=activity["days_since_last_event"].to_numpy(dtype=np.float64),
    )
