"""Erase one user: every row in every schema, an audit row without personal data, a suppression list.

``erase_user`` runs in one transaction:

1. The user's pseudonymous key is the keyed hash of their shop id (the same
   ``sha256('<key>:<id>')`` as the dbt macro ``pseudonymize``). Identity
   stitching (``identity.user_id_map``) may have merged the account with other
   accounts of the same person into one profile, which cannot be split again:
   erasing one account erases the whole person, every account of it (their
   shop ids, account keys and the person's key).
2. Every base table of the platform's schemas that has a ``user_id`` column
   loses the person's rows (``raw`` holds the shop ids, every other schema the
   keys); tables with ``account_user_id`` or ``shop_user_id`` (``identity.*``)
   the rows of the accounts; tables keyed by ``order_id`` only (order lines)
   the rows of the person's orders.
3. ``quality.rejected_rows`` loses the quarantined records that mention the
   shop id or one of the user's order ids; ``quality.excluded_rows`` the rows
   whose ``record_key`` is one of the user's records, ``ml.review_sentiment`` the
   scores of the user's reviews (its ``review_id`` is the reviews' record key).
4. The person's keys (of its accounts and of the person) go into
   ``quality.erased_users``: the loader drops the accounts' rows from every later
   delivery (``recsys.ingest.load``), and the publish sweeps rows a run in flight
   wrote for them after the erasure (:func:`sweep_erased`), so they never come back.
5. ``quality.erasure_audit`` gets one row: when, and how many rows per table;
   no id, hash or other personal data.

Models are refitted from the warehouse on every run and keep no per-user
state on disk, so the next run's models know nothing of the user; the
published lists of the current run (``ml.*`` and ``recs.*``) are deleted here.
Views (``staging.stg_*`` but the table ``stg_shop__users``, searched like the others) read the base tables
and need nothing. The erasure holds the advisory lock of
:mod:`recsys.db.locks` exclusively: it waits for loads, publishes and online pushes in flight.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from datetime import UTC, datetime
from typing import Any

from psycopg2 import sql

from recsys.db import keystore, locks

logger = logging.getLogger(__name__)

#: schemas searched for the user's rows (recs_build: a build a failed publish left, see ``recsys.serving.publish``)
SCHEMAS: tuple[str, ...] = (
    "raw",
    "staging",
    "intermediate",
    "analytics",
    "identity",
    "ml",
    "recs",
    "recs_build",
    "quality",
)

ERASURE_DDL = """
create schema if not exists quality;
create table if not exists quality.erased_users (
    user_key text primary key,
    erased_at timestamptz not null
);
-- the online store keys of erased persons not yet deleted there: written with the erasure, in its transaction,
-- and cleared once the store has forgotten them (a retry after a crash in between still knows them)
create table if not exists quality.erased_online_keys (
    user_key text primary key
);
-- erasures requested for the user_erasure DAG: the shop id waits here, not in the DAG run's conf (Airflow
-- keeps that for good); the erasure deletes the request with the person's other rows
create table if not exists quality.erasure_requests (
    shop_user_id text primary key,
    requested_at timestamptz not null default now()
);
create table if not exists quality.erasure_audit (
    erasure_id bigint generated always as identity primary key,
    erased_at timestamptz not null,
    rows_deleted jsonb not null
);
"""


def _quarantine_pattern(shop_ids: list[str], order_ids: list[str]) -> str:
    """A regex for the quarantined records of these users: whole fields, never a value of another column.

    A JSON record (a row that parsed) names the user in its ``user_id`` field (a social edge: ``from_user_id``
    or ``to_user_id``) or an order in its
    ``order_id`` field; pandas escapes non-ASCII and ``/``, so the id is matched as written and as
    escaped. A raw line (one that did not parse; its columns cannot be told apart) is matched when one
    of its comma-separated fields is the id, quoted or not.
    """

    def alternatives(names: set[str]) -> str:
        escaped = names | {json.dumps(name)[1:-1].replace("/", "\\/") for name in names}
        return "|".join(re.escape(name) for name in sorted(escaped))

    parts = [f'"(from_|to_)?user_id":" *({alternatives(set(shop_ids))}) *"']  # a social edge names two users
    if order_ids:
        parts.append(f'"order_id":"({alternatives(set(order_ids))})"')
    parts.append(f'^(?!\\{{)(.*,)?"? *({alternatives(set(shop_ids) | set(order_ids))}) *"?(,|$)')
    return "|".join(f"({part})" for part in parts)


def pseudonym_key(key: str | None = None) -> str:
    """The pseudonymization key: ``key``, else ``RECSYS_PSEUDONYM_KEY``; a clear error without a usable one."""
    return keystore.check_key(key or os.environ.get("RECSYS_PSEUDONYM_KEY"))


def user_key(shop_user_id: str, key: str | None = None) -> str:
    """The pseudonymous ``user_id`` of a shop user id (as the dbt macro ``pseudonymize`` computes it)."""
    return hashlib.sha256(f"{pseudonym_key(key)}:{shop_user_id.strip(' ')}".encode()).hexdigest()


#: columns naming the other end of a social edge (``social_edges``, ``user_follows``): an edge that points at an
#: erased person is erased with them, from either end
SOCIAL_USER_COLUMNS = ("from_user_id", "to_user_id", "followed_user_id", "from_account_user_id", "to_account_user_id")


def _matches_column(schema: str, column: str) -> sql.Composable:
    """``column`` is one of the person's ids: a shop id in raw (as landed, maybe padded), a key elsewhere."""
    return sql.SQL("trim({0}) = any(%s)" if schema == "raw" else "{0} = any(%s)").format(sql.Identifier(column))


def _social_tables(cursor: Any) -> list[tuple[str, str, str]]:
    """``(schema, table, column)`` of every base table with a column of :data:`SOCIAL_USER_COLUMNS`."""
    return [(schema, table, column) for column in SOCIAL_USER_COLUMNS for schema, table in _tables_with(cursor, column)]


def _social_record_keys(cursor: Any, keyed: set, shop_ids: list[str], keys: list[str]) -> set[str]:
    """The ``record_key`` of the rows of :func:`_social_tables` that name the person (their excluded rows)."""
    found: set[str] = set()
    for schema, table, column in _social_tables(cursor):
        if (schema, table) in keyed:
            query = sql.SQL("select record_key from {} where {}").format(
                sql.Identifier(schema, table), _matches_column(schema, column)
            )
            found.update(_values(cursor, query, (shop_ids if schema == "raw" else keys,)))
    return found


def _tables_with(cursor: Any, column: str) -> list[tuple[str, str]]:
    """Base tables of :data:`SCHEMAS` with a column of that name."""
    cursor.execute(
        """
        select columns.table_schema, columns.table_name
        from information_schema.columns as columns
        inner join information_schema.tables as tables
            on tables.table_schema = columns.table_schema and tables.table_name = columns.table_name
        where columns.column_name = %s and tables.table_type = 'BASE TABLE' and columns.table_schema = any(%s)
        order by 1, 2""",
        (column, list(SCHEMAS)),
    )
    return cursor.fetchall()


def _values(cursor: Any, query: sql.Composable, params: tuple) -> list[str]:
    cursor.execute(query, params)
    return [row[0] for row in cursor.fetchall() if row[0] is not None]


def erase_user(conn: Any, shop_user_id: str, key: str | None = None) -> dict[str, Any]:
    """Remove every trace of one user (see the module docstring) and commit.

    Parameters
    ----------
    conn : psycopg2 connection
        The warehouse; the erasure is one transaction, committed here.
    shop_user_id : str
        The shop's own user id (as in the landing files).
    key : str, optional
        The pseudonymization key; default ``RECSYS_PSEUDONYM_KEY``.

    Returns
    -------
    dict
        ``rows_deleted`` per table (only tables that had rows) and their ``total``.
    """
    shop_id = shop_user_id.strip(" ")
    if not shop_id:
        raise ValueError("an empty shop user id cannot be erased")
    deleted: dict[str, int] = {}
    with conn.cursor() as cursor:
        locks.lock_for_erasure(cursor)
        cursor.execute(ERASURE_DDL)
        shop_ids, person_keys = _person_of(cursor, shop_id)
        account_keys = sorted({user_key(name, key) for name in shop_ids})
        keys = sorted(set(account_keys) | person_keys)
        user_tables = _tables_with(cursor, "user_id")
        with_orders = set(_tables_with(cursor, "order_id"))
        order_tables = sorted(with_orders - set(user_tables))
        keyed = set(_tables_with(cursor, "record_key"))

        def matches(schema: str) -> sql.Composable:
            """The person's rows: the shop ids in raw (as landed, maybe padded), the keys elsewhere."""
            return sql.SQL("trim(user_id) = any(%s)" if schema == "raw" else "user_id = any(%s)")

        def value(schema: str) -> list[str]:
            return shop_ids if schema == "raw" else keys

        # collect what other tables point at before anything is deleted
        order_ids: set[str] = set()
        record_keys: set[str] = {*shop_ids, *keys}
        for schema, table in user_tables:  # a few dozen tables, not rows
            for column, found in (("order_id", order_ids), ("record_key", record_keys)):
                if (schema, table) in (with_orders if column == "order_id" else keyed):
                    query = sql.SQL("select {} from {} where {}").format(
                        sql.Identifier(column), sql.Identifier(schema, table), matches(schema)
                    )
                    found.update(_values(cursor, query, (value(schema),)))
        record_keys.update(_social_record_keys(cursor, keyed, shop_ids, keys))
        for schema, table in order_tables:
            if (schema, table) in keyed:
                query = sql.SQL("select record_key from {} where order_id = any(%s)").format(
                    sql.Identifier(schema, table)
                )
                record_keys.update(_values(cursor, query, (sorted(order_ids),)))

        def delete(schema: str, table: str, condition: sql.Composable, params: tuple) -> None:
            cursor.execute(sql.SQL("delete from {} where {}").format(sql.Identifier(schema, table), condition), params)
            if cursor.rowcount:
                deleted[f"{schema}.{table}"] = deleted.get(f"{schema}.{table}", 0) + cursor.rowcount

        for schema, table in user_tables:
            delete(schema, table, matches(schema), (value(schema),))
        for schema, table in order_tables:
            delete(schema, table, sql.SQL("order_id = any(%s)"), (sorted(order_ids),))
        for schema, table in _tables_with(cursor, "account_user_id"):
            delete(schema, table, sql.SQL("account_user_id = any(%s)"), (keys,))
        for schema, table in _tables_with(cursor, "shop_user_id"):
            delete(schema, table, sql.SQL("shop_user_id = any(%s)"), (shop_ids,))
        for schema, table, column in _social_tables(cursor):  # the edges that point at the person go too
            delete(schema, table, _matches_column(schema, column), (value(schema),))
        if ("quality", "rejected_rows") in _tables_with(cursor, "raw_record"):
            delete("quality", "rejected_rows", sql.SQL("raw_record ~ %s"), (_quarantine_pattern(shop_ids, order_ids),))
        if ("quality", "excluded_rows") in keyed:
            delete("quality", "excluded_rows", sql.SQL("record_key = any(%s)"), (sorted(record_keys),))
        if ("ml", "review_sentiment") in _tables_with(cursor, "text_md5"):  # keyed by review id: the record key
            delete("ml", "review_sentiment", sql.SQL("review_id = any(%s)"), (sorted(record_keys),))

        now = datetime.now(UTC)
        cursor.execute(
            "insert into quality.erased_users (user_key, erased_at) select unnest(%s::text[]), %s"
            " on conflict (user_key) do nothing",
            (keys, now),
        )
        cursor.execute(
            "insert into quality.erased_online_keys (user_key) select unnest(%s::text[]) on conflict do nothing",
            (keys,),
        )
        cursor.execute(
            "insert into quality.erasure_audit (erased_at, rows_deleted) values (%s, %s)",
            (now, json.dumps(deleted, sort_keys=True)),
        )
    conn.commit()
    total = sum(deleted.values())
    logger.info("erased one person (%d accounts): %d rows in %d tables", len(shop_ids), total, len(deleted))
    return {"rows_deleted": deleted, "total": total, "accounts": len(shop_ids)}


def sweep_erased(cursor: Any, since: datetime | None = None) -> dict[str, int]:
    """Delete the rows of persons erased at or after ``since`` (every erased person when ``None``) again.

    A run that read a person before the erasure committed may write their rows after it (models, lists,
    the build schema). The publish calls this in its transaction, holding :func:`recsys.db.locks.hold_off_erasure`,
    so nothing of them is published. Every base table of :data:`SCHEMAS` but ``raw`` (shop ids, handled by the
    loader) loses its rows whose ``user_id`` or ``account_user_id`` is an erased key.

    Returns
    -------
    dict
        Rows deleted per table (only tables that had rows).
    """
    cursor.execute("select to_regclass('quality.erased_users') is not null")
    if not cursor.fetchone()[0]:
        return {}
    cursor.execute(
        "select coalesce(array_agg(user_key), '{}') from quality.erased_users where erased_at >= %s",
        (since or datetime.min.replace(tzinfo=UTC),),
    )
    keys = cursor.fetchone()[0]
    deleted: dict[str, int] = {}
    for column in ("user_id", "account_user_id", *SOCIAL_USER_COLUMNS) if keys else ():
        for schema, table in _tables_with(cursor, column):
            if schema != "raw":
                cursor.execute(
                    sql.SQL("delete from {} where {} = any(%s)").format(
                        sql.Identifier(schema, table), sql.Identifier(column)
                    ),
                    (keys,),
                )
                if cursor.rowcount:
                    deleted[f"{schema}.{table}"] = cursor.rowcount
    if deleted:
        logger.info("swept rows of erased persons written after their erasure: %s", deleted)
    return deleted


def request_erasure(conn: Any, shop_user_id: str) -> None:
    """Queue an erasure for the ``user_erasure`` DAG (``quality.erasure_requests``); commits."""
    shop_id = shop_user_id.strip(" ")
    if not shop_id:
        raise ValueError("an empty shop user id cannot be erased")
    with conn.cursor() as cursor:
        cursor.execute(ERASURE_DDL)
        cursor.execute(
            "insert into quality.erasure_requests (shop_user_id) values (%s) on conflict do nothing", (shop_id,)
        )
    conn.commit()


def next_request(conn: Any) -> str | None:
    """The oldest queued erasure's shop user id, or ``None`` when the queue is empty."""
    with conn.cursor() as cursor:
        cursor.execute("select to_regclass('quality.erasure_requests') is not null")
        if not cursor.fetchone()[0]:
            conn.rollback()
            return None
        cursor.execute("select shop_user_id from quality.erasure_requests order by requested_at, shop_user_id limit 1")
        row = cursor.fetchone()
    conn.rollback()
    return row[0] if row else None


def pending_online_keys(conn: Any) -> list[str]:
    """Keys of erased persons the online store may still hold (``quality.erased_online_keys``)."""
    with conn.cursor() as cursor:
        cursor.execute("select to_regclass('quality.erased_online_keys') is not null")
        if not cursor.fetchone()[0]:
            return []
        cursor.execute("select user_key from quality.erased_online_keys order by 1")
        return [row[0] for row in cursor.fetchall()]


def online_keys_forgotten(conn: Any, keys: list[str]) -> None:
    """Clear ``keys`` from ``quality.erased_online_keys`` once the online store deleted them; commits."""
    with conn.cursor() as cursor:
        cursor.execute("delete from quality.erased_online_keys where user_key = any(%s)", (keys,))
    conn.commit()


def person_keys(conn: Any, shop_user_id: str, key: str | None = None) -> list[str]:
    """Every pseudonymous key of the person a shop user id belongs to: its accounts' and the person's.

    Read before :func:`erase_user` to delete the same keys elsewhere (the online store keys lists by person).
    """
    with conn.cursor() as cursor:
        shop_ids, persons = _person_of(cursor, shop_user_id.strip(" "))
    return sorted({user_key(name, key) for name in shop_ids} | persons)


def _person_of(cursor: Any, shop_id: str) -> tuple[list[str], set[str]]:
    """The shop ids of every account of the person ``shop_id`` belongs to, and the person's key(s).

    Without ``identity.user_id_map`` (nothing built yet) or without the id in it, the account alone.
    """
    cursor.execute("select to_regclass('identity.user_id_map') is not null")
    if not cursor.fetchone()[0]:
        return [shop_id], set()
    cursor.execute(
        "select shop_user_id, user_id from identity.user_id_map where user_id in"
        " (select user_id from identity.user_id_map where shop_user_id = %s)",
        (shop_id,),
    )
    rows = cursor.fetchall()
    return sorted({shop_id, *(row[0] for row in rows)}), {row[1] for row in rows}
