"""What the serving API reads: the published run, from the online store (Redis) when there is one, else the
warehouse; the shop id map, item categories and the run's repeat-purchase categories from the warehouse.

When the online store fails (refused, timed out) or holds no published run yet, the lists are read from the
warehouse, and Redis is left alone for :data:`REDIS_RETRY_SECONDS` before it is tried again.

The shop's own user id is looked up in ``identity.published_user_id_map``, the map swapped in with the
published lists (:mod:`recsys.serving.publish`), so a lookup always points at a list of the same run. In the
same statement the warehouse tells whether that shop user was erased (:meth:`Store.lookup`), hashing the id
with the key of its keystore (:mod:`recsys.db.keystore`): this process never holds the key. The profile
endpoint reads :data:`PROFILE_COLUMNS` of ``analytics.user_profiles`` and ``analytics.dim_users``.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from psycopg2 import errors
from psycopg2.pool import ThreadedConnectionPool

from recsys.db import keystore
from recsys.serving import online, placements

logger = logging.getLogger(__name__)

#: the cold-start segment every new shopper falls back to
GLOBAL_SEGMENT = "all"
#: what the profile endpoint tells of a shopper: ``analytics.user_profiles`` and a few of ``analytics.dim_users``
#: (no contact data, no gender or age: those are not needed to explain a list)
PROFILE_COLUMNS = {
    "profiles": (
        "recency_days",
        "frequency",
        "monetary",
        "r_score",
        "f_score",
        "m_score",
        "rfm_segment",
        "spending_power",
        "average_relative_price",
        "price_sensitivity",
        "promo_sensitivity",
        "lifecycle_stage",
        "last_activity_at",
        "days_since_last_activity",
        "top_categories",
    ),
    "users": ("signup_date", "region", "platform", "is_personalization_allowed"),
}
#: interest tags the profile endpoint lists (the strongest first)
PROFILE_TAGS = 20
#: seconds the API waits for the online store (to connect, for an answer) before it reads the warehouse
REDIS_TIMEOUT_SECONDS = 1.0
#: seconds the API reads the warehouse only, after the online store failed
REDIS_RETRY_SECONDS = 30.0
#: seconds before the erasure tables are looked for again, after a warehouse without them
ERASURE_RECHECK_SECONDS = 60.0
#: a condition: the shop user id (the expression ``{}``) was erased (its keyed hash is in ``quality.erased_users``)
ERASED_SQL = f"exists (select from quality.erased_users as erased where erased.user_key = {keystore.PSEUDONYMIZE_SQL})"
#: a sentinel: the online store could not answer
_UNAVAILABLE = object()


class Store:
    """The published run for the API (see the module docstring).

    Parameters
    ----------
    url : str
        The warehouse (``postgresql://``).
    redis_client : redis.Redis, optional
        The online store; ``None`` reads the lists from the warehouse.
    prefix : str
        The online store's key prefix (:data:`recsys.serving.online.PREFIX`).
    """

    def __init__(
        self,
        url: str,
        redis_client: Any = None,
        prefix: str = online.PREFIX,
        max_connections: int = 8,
    ):
        self.pool = ThreadedConnectionPool(1, max_connections, url)
        self.redis = redis_client
        self.prefix = prefix
        self._redis_down_until = 0.0
        self._no_erasures_until = 0.0

    def _online(self, kind: str, entity_id: str) -> object:
        """The online store's current value of (``kind``, ``entity_id``), or :data:`_UNAVAILABLE`.

        Unavailable: no online store, none published there yet, or it failed (then not tried again for
        :data:`REDIS_RETRY_SECONDS`).
        """
        if self.redis is None or time.monotonic() < self._redis_down_until:
            return _UNAVAILABLE
        import redis

        try:
            run_id, value = online.read_current(self.redis, kind, entity_id, self.prefix)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
            self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
            logger.warning("online store unavailable (%s): reading the warehouse for %ss", error, REDIS_RETRY_SECONDS)
            return _UNAVAILABLE
        return _UNAVAILABLE if run_id is None else value

    def close(self) -> None:
        self.pool.closeall()

    @contextmanager
    def connection(self):
        """A pooled warehouse connection in autocommit mode (each statement its own snapshot)."""
        conn = self.pool.getconn()
        try:
            conn.autocommit = True
            yield conn
        finally:
            self.pool.putconn(conn)

    def _rows(self, query: str, params: tuple) -> list[tuple]:
        with self.connection() as conn, conn.cursor() as cursor:
            cursor.execute(query, params)
            return cursor.fetchall()

    def run(self) -> dict:
        """The published run: ``run_id`` and its ``repeat_purchase_categories`` (a set)."""
        rows = self._rows("select run_id, repeat_purchase_categories from recs.runs where is_published", ())
        if not rows:
            return {"run_id": None, "repeat_purchase_categories": set()}
        run_id, repeat = rows[0]
        return {"run_id": run_id, "repeat_purchase_categories": set(filter(None, (repeat or "").split("|")))}

    def person(self, shop_user_id: str) -> str | None:
        """The pseudonymous ``user_id`` of a shop user id in the published map, or ``None``."""
        rows = self._rows("select user_id from identity.published_user_id_map where shop_user_id = %s", (shop_user_id,))
        return rows[0][0] if rows else None

    def erased(self, shop_user_ids: list[str]) -> set[str]:
        """The shop user ids of ``shop_user_ids`` that were erased.

        Checked in the warehouse: their keyed hash (the key read from :mod:`recsys.db.keystore` inside the
        statement) against ``quality.erased_users``, so this process never holds the pseudonymization key.
        """
        query = (
            "select requested.shop_user_id from unnest(%(ids)s::text[]) as requested (shop_user_id)"
            f" where {ERASED_SQL.format('requested.shop_user_id')}"
        )
        rows = self._erasure_rows(query, {"ids": sorted(set(shop_user_ids))})
        return {row[0] for row in rows or ()}

    def lookup(self, shop_user_id: str) -> tuple[bool, str | None]:
        """Whether the shop user was erased (:meth:`erased`), and their pseudonymous ``user_id`` (:meth:`person`).

        One round trip to the warehouse.
        """
        query = (
            f"select {ERASED_SQL.format('%(id)s')},"
            " (select user_id from identity.published_user_id_map where shop_user_id = %(id)s)"
        )
        rows = self._erasure_rows(query, {"id": shop_user_id})
        return (bool(rows[0][0]), rows[0][1]) if rows else (False, self.person(shop_user_id))

    def _erasure_rows(self, query: str, params: dict) -> list[tuple] | None:
        """The rows of a query that reads the erasures; ``None`` when the warehouse has no erasure tables yet.

        Then nobody was ever erased (or pseudonymized); the tables are looked for again after
        :data:`ERASURE_RECHECK_SECONDS`.
        """
        if time.monotonic() < self._no_erasures_until:
            return None
        try:
            return self._rows(query, params)
        except errors.UndefinedTable:
            self._no_erasures_until = time.monotonic() + ERASURE_RECHECK_SECONDS
            return None

    def profile(self, user_id: str) -> dict | None:
        """The profile of a pseudonymous user (:data:`PROFILE_COLUMNS`), or ``None`` without one."""
        columns = ", ".join(f"{table}.{column}" for table, names in PROFILE_COLUMNS.items() for column in names)
        with self.connection() as conn, conn.cursor() as cursor:
            cursor.execute(
                f"select {columns} from analytics.user_profiles as profiles"
                " left join analytics.dim_users as users on users.user_id = profiles.user_id"
                " where profiles.user_id = %s",
                (user_id,),
            )
            row = cursor.fetchone()
            names = [column.name for column in cursor.description]
        if row is None:
            return None
        return {
            name: float(value) if isinstance(value, Decimal) else value for name, value in zip(names, row, strict=True)
        }

    def interest_tags(self, user_id: str) -> list[dict]:
        """The user's :data:`PROFILE_TAGS` strongest interest tags (``analytics.user_interest_tags``)."""
        rows = self._rows(
            "select tag, tag_type, weight, tag_rank from analytics.user_interest_tags where user_id = %s"
            " order by tag_rank, tag limit %s",
            (user_id, PROFILE_TAGS),
        )
        return [dict(zip(("tag", "tag_type", "weight", "tag_rank"), row, strict=True)) for row in rows]

    def recommendations(self, user_id: str, placement: str = placements.DEFAULT) -> list[dict] | None:
        """The published ``placement`` list of a pseudonymous user in rank order, or ``None`` without one."""
        if (value := self._online(online.placement_kind(placement), user_id)) is not _UNAVAILABLE:
            return value
        rows = self._rows(
            "select item_id, score, reason_code, reason_text from recs.user_recommendations"
            " where user_id = %s and placement = %s order by item_rank",
            (user_id, placement),
        )
        return [dict(zip(("item_id", "score", "reason_code", "reason_text"), row, strict=True)) for row in rows] or None

    def cold_start(self) -> list[dict]:
        """The global cold-start list (segment ``all``)."""
        rows = self._rows(
            "select item_id, score from recs.cold_start_recommendations where segment_key = %s order by item_rank",
            (GLOBAL_SEGMENT,),
        )
        return [
            {"item_id": item, "score": score, "reason_code": "popular", "reason_text": "Popular with shoppers"}
            for item, score in rows
        ]

    def similar(self, item_id: str) -> list[dict] | None:
        """Items similar to ``item_id``, most similar first, or ``None`` for an item without any."""
        if (value := self._online("similar", item_id)) is not _UNAVAILABLE:
            return value
        rows = self._rows(
            "select similar_item_id, score from recs.similar_items where item_id = %s order by item_rank", (item_id,)
        )
        return [{"item_id": item, "score": score} for item, score in rows] or None

    def categories(self, item_ids: list[str]) -> dict[str, str]:
        """The top-level category of each item (items without one are left out)."""
        rows = self._rows(
            "select item_id, category from analytics.dim_items where item_id = any(%s) and category is not null",
            (list(item_ids),),
        )
        return dict(rows)
