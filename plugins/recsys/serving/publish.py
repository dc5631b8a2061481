"""Atomic publish: swap the freshly built recs schema in for ``recs`` in one transaction.

The ``publish`` dbt group builds the recs models (and runs their tests) in the build schema
:data:`BUILD_SCHEMA` (dbt var ``recs_schema``), never in ``recs`` itself. Only when all of them
passed, :func:`swap_recs` copies the run's identity map (``identity.user_id_map``, rebuilt at the start
of the run) to a staging table and then, in one transaction:

1. holds off erasures (:mod:`recsys.db.locks`) and sweeps out the rows of persons erased while the run was
   in flight (:func:`recsys.quality.erasure.sweep_erased`), then checks the build schema holds the run,
2. adds the lists an incremental run carried (:func:`add_carried_lists`): dbt built only those it generated,
3. locks every relation of ``recs`` (``access exclusive``, with a short ``lock_timeout`` and retries,
   so it never holds some locks while a reader waits for them long enough to deadlock it),
4. renames ``recs`` to :data:`PREVIOUS_SCHEMA` and the build schema to ``recs``, and the staged map to
   :data:`PUBLISHED_MAP`: the map serving and export read always belongs to the published lists,
5. drops the previous schema.

A reader's statement therefore sees every ``recs`` table of the old run or every table of the new one:
a statement that started on the old tables holds them until it ends, which the swap waits for; a
statement that waits for the swap's locks looks its tables up again after the commit (Postgres does
that when a relation it waited for was dropped) and finds the new ones. A crash or a failed test
anywhere before the commit leaves ``recs`` as it was; the next attempt rebuilds the build schema.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from psycopg2 import errors, sql

from recsys.db import locks
from recsys.quality import erasure

log = logging.getLogger(__name__)

PUBLISHED_SCHEMA = "recs"
BUILD_SCHEMA = "recs_build"
PREVIOUS_SCHEMA = "recs_previous"
#: the shop id → pseudonymous ``user_id`` map of the published run: what serving and export look ids up in
PUBLISHED_MAP = "identity.published_user_id_map"
_STAGED_MAP = "user_id_map_staged"
#: tables every published run has (the recs models); the swap refuses a build schema without one of them
RECS_TABLES = (
    "cold_start_recommendations",
    "model_evaluations",
    "model_search",
    "promotion_targets",
    "runs",
    "similar_items",
    "user_recommendations",
)
#: tables dbt builds with only the published run's rows, all of ``run_id``; each must have rows, but
#: ``user_recommendations`` may be empty before :func:`add_carried_lists` (a day whose users all kept their lists)
RUN_TABLES = ("cold_start_recommendations", "similar_items", "user_recommendations")
LISTS = "user_recommendations"


class PublishError(RuntimeError):
    """The build schema is not a complete build of the run to publish."""


def check_build(cur, run_id: str, build_schema: str = BUILD_SCHEMA) -> dict[str, int]:
    """Check that ``build_schema`` is a complete build of ``run_id``; return rows per run table.

    Raises
    ------
    PublishError
        A recs table is missing, ``runs`` does not mark exactly ``run_id`` as published, or a run table is
        empty or holds another run.
    """
    cur.execute(
        "select table_name from information_schema.tables where table_schema = %s and table_type = 'BASE TABLE'",
        (build_schema,),
    )
    missing = sorted(set(RECS_TABLES) - {row[0] for row in cur.fetchall()})
    if missing:
        raise PublishError(f"{build_schema} lacks {', '.join(missing)}: run the publish dbt models first")
    cur.execute(sql.SQL("select run_id from {} where is_published").format(sql.Identifier(build_schema, "runs")))
    published = [row[0] for row in cur.fetchall()]
    if published != [run_id]:
        raise PublishError(f"{build_schema}.runs publishes {published}, expected [{run_id!r}]")
    counts = {}
    for table in RUN_TABLES:
        cur.execute(
            sql.SQL("select count(*), count(*) filter (where run_id is distinct from %s) from {}").format(
                sql.Identifier(build_schema, table)
            ),
            (run_id,),
        )
        rows, other = cur.fetchone()
        if (rows == 0 and table != LISTS) or other:
            raise PublishError(f"{build_schema}.{table} has {rows} rows, {other} of another run than {run_id}")
        counts[table] = rows
    return counts


def add_carried_lists(cur, run_id: str, build_schema: str = BUILD_SCHEMA) -> dict[str, int]:
    """Complete ``build_schema.user_recommendations`` with the lists ``run_id`` carried; return what it did.

    dbt builds the lists the run generated. An incremental run carried every other user's list from the earlier
    run that generated it (``ml.carried_lists``), and ``recs.user_recommendations`` mostly holds those lists
    already: its ``run_id`` names the run that generated a list. So when the published table has the build's
    columns it becomes the run's table: it loses every list the run does not carry (users rescored or gone),
    gets the build's lists and the carried lists it lacks, and is moved into the build schema in place of the
    build's table (by :func:`swap_recs`, under its locks). A daily run so writes its touched users' rows, not
    every list. Otherwise (a first publish, a changed table) the carried lists are copied into the build's table.
    Readers of ``recs`` see none of it before the commit: it writes rows, under no lock that blocks them.

    Returns
    -------
    dict
        Empty for a run that carried nothing (a full run). Else ``lists_copied`` (carried rows copied from
        ``ml.recommendations``), ``lists_rows`` (rows of the run's table) and, when the published table
        became the run's, ``lists_dropped`` (its rows the run does not carry).
    """
    cur.execute("select to_regclass('ml.carried_lists') is not null")
    if not cur.fetchone()[0]:
        return {}
    cur.execute("select exists (select from ml.carried_lists where run_id = %s)", (run_id,))
    if not cur.fetchone()[0]:
        return {}
    columns = _columns(cur, build_schema)
    names = sql.SQL(", ").join(sql.Identifier(name) for name, _ in columns)
    build = sql.Identifier(build_schema, LISTS)
    target = build
    # the lists the run carries, of users still in the warehouse (as the model's filter for the generated ones)
    carried = sql.SQL(
        "select carried.user_id, carried.list_run_id from ml.carried_lists as carried"
        " inner join analytics.dim_users as users on carried.user_id = users.user_id where carried.run_id = {}"
    ).format(sql.Literal(run_id))
    stats = {}
    if _columns(cur, PUBLISHED_SCHEMA) == columns:
        target = sql.Identifier(PUBLISHED_SCHEMA, LISTS)
        cur.execute(
            sql.SQL(
                "delete from {target} as lists where not exists (select from ({carried}) as carried"
                " where carried.user_id = lists.user_id and carried.list_run_id = lists.run_id)"
            ).format(target=target, carried=carried)
        )
        stats["lists_dropped"] = cur.rowcount
        cur.execute(
            sql.SQL("insert into {} ({names}) select {names} from {} order by user_id, placement, item_rank").format(
                target, build, names=names
            )
        )
    cur.execute(
        sql.SQL(
            "insert into {target} ({names}) select {lists_columns} from ({carried}) as carried"
            " inner join ml.recommendations as lists"
            " on carried.list_run_id = lists.run_id and carried.user_id = lists.user_id"
            " where not exists (select from {target} as published where published.user_id = carried.user_id)"
            " order by lists.user_id, lists.placement, lists.item_rank"
        ).format(
            target=target,
            names=names,
            lists_columns=sql.SQL(", ").join(sql.Identifier("lists", name) for name, _ in columns),
            carried=carried,
        )
    )
    stats["lists_copied"] = cur.rowcount
    cur.execute(sql.SQL("select count(*) from {}").format(target))
    stats["lists_rows"] = cur.fetchone()[0]
    return stats


def _columns(cur, schema: str) -> list[tuple[str, str]]:
    """(name, type) of ``schema.user_recommendations``' columns in order; empty when it is not a table."""
    cur.execute(
        "select column_name, data_type from information_schema.columns as columns"
        " inner join information_schema.tables as tables using (table_schema, table_name)"
        " where table_schema = %s and table_name = %s and table_type = 'BASE TABLE' order by ordinal_position",
        (schema, LISTS),
    )
    return cur.fetchall()


def swap_recs(
    conn,
    run_id: str,
    build_schema: str = BUILD_SCHEMA,
    lock_timeout_ms: int = 200,
    attempts: int = 50,
    erased_since: datetime | None = None,
) -> dict:
    """Publish ``run_id``: swap ``build_schema`` in for ``recs`` in one transaction and drop the old ``recs``.

    Parameters
    ----------
    conn : psycopg2 connection
        Committed by this function (once, on success); rolled back on failure.
    run_id : str
        The run the build schema must hold (see :func:`check_build`).
    build_schema : str
        Where the ``publish`` dbt group built the recs models (dbt var ``recs_schema``).
    lock_timeout_ms : int
        How long to wait for one lock on ``recs``; it must stay below the server's ``deadlock_timeout``
        (default 1 s), so that a reader waiting for a lock the swap holds is never aborted as a deadlock.
    attempts : int
        How many times to try to take the locks before giving up.
    erased_since : datetime, optional
        When the run started: rows of persons erased since then are swept (default: of every erased person).

    Returns
    -------
    dict
        ``run_id``, ``schema`` and the rows per run table, for XCom.
    """
    has_map = _stage_identity_map(conn)
    try:
        with conn.cursor() as cur:
            locks.hold_off_erasure(cur)
            swept = erasure.sweep_erased(cur, erased_since)
            counts = check_build(cur, run_id, build_schema)
            merged = add_carried_lists(cur, run_id, build_schema)
            counts[LISTS] = merged.pop("lists_rows", counts[LISTS])
            if not counts[LISTS]:
                raise PublishError(f"{build_schema}.{LISTS} has no rows, and {run_id} carried no list")
            _lock_published(cur, lock_timeout_ms, attempts)
            if "lists_dropped" in merged:  # the published lists became the run's: they replace the build's
                cur.execute(sql.SQL("drop table {}").format(sql.Identifier(build_schema, LISTS)))
                cur.execute(
                    sql.SQL("alter table {} set schema {}").format(
                        sql.Identifier(PUBLISHED_SCHEMA, LISTS), sql.Identifier(build_schema)
                    )
                )
            cur.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(PREVIOUS_SCHEMA)))
            cur.execute("select 1 from pg_namespace where nspname = %s", (PUBLISHED_SCHEMA,))
            if cur.fetchone():
                cur.execute(
                    sql.SQL("alter schema {} rename to {}").format(
                        sql.Identifier(PUBLISHED_SCHEMA), sql.Identifier(PREVIOUS_SCHEMA)
                    )
                )
            cur.execute(
                sql.SQL("alter schema {} rename to {}").format(
                    sql.Identifier(build_schema), sql.Identifier(PUBLISHED_SCHEMA)
                )
            )
            cur.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(PREVIOUS_SCHEMA)))
            if has_map:
                cur.execute(f"drop table if exists {PUBLISHED_MAP}")
                cur.execute(f"alter table identity.{_STAGED_MAP} rename to {PUBLISHED_MAP.split('.')[1]}")
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    log.info("published run %s: %s %s", run_id, counts, merged)
    return {"run_id": run_id, "schema": PUBLISHED_SCHEMA, **counts, **merged, "rows_swept": sum(swept.values())}


def _lock_published(cur, lock_timeout_ms: int, attempts: int) -> None:
    """Lock every relation of ``recs`` in ``access exclusive`` mode, each attempt waiting ``lock_timeout_ms``.

    A failed attempt rolls back to a savepoint, which releases the locks it took: the swap never holds some of
    them while a reader waits, and the rows it wrote before stay.
    """
    cur.execute(sql.SQL("set local lock_timeout = {}").format(sql.Literal(f"{lock_timeout_ms}ms")))
    cur.execute(
        "select c.relname from pg_class as c inner join pg_namespace as n on n.oid = c.relnamespace"
        " where n.nspname = %s and c.relkind in ('r', 'p', 'v', 'm') order by c.relname",
        (PUBLISHED_SCHEMA,),
    )
    current = [row[0] for row in cur.fetchall()]
    if not current:
        return
    statement = sql.SQL("lock table {} in access exclusive mode").format(
        sql.SQL(", ").join(sql.Identifier(PUBLISHED_SCHEMA, name) for name in current)
    )
    for attempt in range(1, attempts + 1):
        cur.execute("savepoint lock_recs")
        try:
            cur.execute(statement)
            return
        except errors.LockNotAvailable:
            cur.execute("rollback to savepoint lock_recs")
            log.info("recs is busy (attempt %d of %d), trying again", attempt, attempts)
            time.sleep(min(0.05 * attempt, 1.0))
    raise PublishError(f"could not lock {PUBLISHED_SCHEMA} in {attempts} attempts; readers hold it")


def _stage_identity_map(conn) -> bool:
    """Copy ``identity.user_id_map`` to ``identity.user_id_map_staged`` (committed); ``False`` without a map."""
    with conn.cursor() as cur:
        cur.execute("select to_regclass('identity.user_id_map') is not null")
        if not cur.fetchone()[0]:
            conn.rollback()
            return False
        cur.execute(f"drop table if exists identity.{_STAGED_MAP}")
        cur.execute(
            f"create table identity.{_STAGED_MAP} as select user_id, shop_user_id, account_user_id"
            " from identity.user_id_map"
        )
        cur.execute(f"create unique index on identity.{_STAGED_MAP} (shop_user_id)")
        cur.execute(f"create index on identity.{_STAGED_MAP} (user_id)")
    conn.commit()
    return True
