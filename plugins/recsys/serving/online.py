"""The online store: the published run in Redis, for the shop to serve from with one key read per page.

When ``REDIS_URL`` is set, :func:`push_online` (the DAG task ``push_online``, after ``swap_recs``) copies the
published run from ``recs`` (and the profiles from ``analytics.user_profiles``) into Redis. Key layout, with
``recsys`` as the default prefix; every value is one JSON string:

======================================  =====================================================================
key                                     value
======================================  =====================================================================
``recsys:current``                      the run id readers must use (the pointer)
``recsys:runs``                         set of the run ids that may still have keys (for clean-up)
``recsys:{run_id}:recs:{user_id}``      ``[{"item_id", "score", "reason_code", "reason_text"}, ...]``, rank order:
                                        the ``for_you`` placement (the one list before placements existed)
``recsys:{run_id}:recs_discover:{..}``  the same for the ``discover`` placement
``recsys:{run_id}:recs_buy_again:{..}`` the same for ``buy_again`` (only users who bought something)
``recsys:{run_id}:profile:{user_id}``   ``{"rfm_segment", "spending_power", "lifecycle_stage", "top_categories"}``
``recsys:{run_id}:similar:{item_id}``   ``[{"item_id", "score"}, ...]``, most similar first
``recsys:{run_id}:meta``                ``{"run_id", "users", "profiles", "items", "placements", "pushed_at"}``:
                                        key counts (``placements``: users per placement), written last
======================================  =====================================================================

``user_id`` is the pseudonymous key of the warehouse (``analytics.dim_users.user_id``): the shop maps its own
id through ``identity.user_id_map`` before reading, so Redis holds no shop id, email or name.

Versioning: every key of a run is written first (``MSET`` per batch of rows streamed from a server-side
cursor), then ``recsys:current`` is flipped to the new run with one ``SET``, then every key of the other runs
gets an expiry of ``grace_seconds`` (``EXPIRE ... NX``: a key already expiring keeps its deadline). A reader
reads ``recsys:current`` and then the keys of that run (:func:`read_current`), so it sees one run: the old one
until the flip, the new one after it. The grace period keeps the previous run readable for a reader that read
the pointer just before the flip. Pushing the current run again overwrites its keys with the same values
(a re-run of an interval leaves the same tables).

An incremental run (``recsys.orchestration.schedule``) carries most users' lists from earlier runs; the push copies
those users' list keys from the run the store serves, inside Redis (``COPY``, Redis 6.2 or later), instead of
building them again from the warehouse (:func:`_copy_lists`): a list is copied when the run carries it from the
run whose list the previous push wrote (``ml.carried_lists``) and that run has not been re-run since the push
(``ml.runs.finished_at`` before the previous run's ``pushed_at``). Every other list, the profiles and the similar
items are written from the warehouse.
"""

from __future__ import annotations

import json
import logging
import os

from psycopg2 import sql

from recsys.db import locks
from recsys.serving import placements

log = logging.getLogger(__name__)

PREFIX = "recsys"
#: how long the previous run stays readable after the flip, in seconds
GRACE_SECONDS = 3600
BATCH_ROWS = 5_000


def placement_kind(placement: str) -> str:
    """The key kind of a placement's lists: ``recs`` for ``for_you`` (as before placements), else ``recs_<name>``."""
    return "recs" if placement == placements.FOR_YOU else f"recs_{placement}"


#: the key kinds of the users' lists, one per placement
RECS_KINDS: dict[str, str] = {placement_kind(placement): placement for placement in placements.PLACEMENTS}

#: (kind, key column, JSON value): one query per kind over the published tables, values built in Postgres
_KINDS = {
    **{
        kind: sql.SQL(
            "select user_id, json_agg(json_build_object('item_id', item_id, 'score', score,"
            " 'reason_code', reason_code, 'reason_text', reason_text) order by item_rank)::text"
            " from recs.user_recommendations where placement = {} group by user_id"
        ).format(sql.Literal(placement))
        for kind, placement in RECS_KINDS.items()
    },
    "profile": sql.SQL(
        "select user_id, json_build_object('rfm_segment', rfm_segment, 'spending_power', spending_power,"
        " 'lifecycle_stage', lifecycle_stage,"
        " 'top_categories', coalesce(string_to_array(top_categories, '|'), '{}'))::text"
        " from analytics.user_profiles"
    ),
    "similar": sql.SQL(
        "select item_id, json_agg(json_build_object('item_id', similar_item_id, 'score', score)"
        " order by item_rank)::text from recs.similar_items group by item_id"
    ),
}


class OnlineStoreError(RuntimeError):
    """``recs`` does not hold exactly the run to push."""


def redis_client(url: str | None = None, **options):
    """A Redis client for ``url`` (default ``REDIS_URL``), or ``None`` when no URL is set.

    ``options`` go to ``redis.Redis.from_url`` (e.g. ``socket_timeout``).
    """
    url = url or os.environ.get("REDIS_URL")
    if not url:
        return None
    import redis

    return redis.Redis.from_url(url, **options)


def run_key(run_id: str, kind: str, entity_id: str, prefix: str = PREFIX) -> str:
    """The key of one value of a run, e.g. ``recsys:run_20260301T000000:recs:u1``."""
    return f"{prefix}:{run_id}:{kind}:{entity_id}"


def _check_published(cur, run_id: str) -> None:
    cur.execute("select run_id from recs.runs where is_published")
    published = [row[0] for row in cur.fetchall()]
    if published != [run_id]:
        raise OnlineStoreError(f"recs.runs publishes {published}, expected [{run_id!r}]")
    # (a list of recs.user_recommendations names the run that generated it: an incremental run carries lists)
    cur.execute("select exists (select from recs.similar_items where run_id is distinct from %s)", (run_id,))
    if cur.fetchone()[0]:
        raise OnlineStoreError(f"recs.similar_items holds rows of another run than {run_id}")


#: the users whose lists the push copies from the previous push (the module docstring): carried by the run from the
#: run whose list the previous push wrote, not re-run since that push, and still in dim_users (as the publish)
_COPYABLE = """
select carried.user_id
from ml.carried_lists as carried
inner join analytics.dim_users as users
    on carried.user_id = users.user_id
inner join ml.runs as list_run
    on carried.list_run_id = list_run.run_id
left join ml.carried_lists as before
    on before.run_id = %(previous)s and carried.user_id = before.user_id
where
    carried.run_id = %(run)s
    and (carried.list_run_id = %(previous)s or carried.list_run_id = before.list_run_id)
    and list_run.finished_at < %(pushed_at)s
"""


def _copy_lists(cur, client, run_id: str, previous: str | None, prefix: str, batch_keys: int) -> dict[str, list]:
    """Copy the lists of the users :data:`_COPYABLE` names from the ``previous`` run's keys; return the users
    whose key was copied, per kind."""
    meta = client.get(f"{prefix}:{previous}:meta") if previous and previous != run_id else None
    pushed_at = json.loads(meta).get("pushed_at") if meta else None
    cur.execute("select to_regclass('ml.carried_lists') is not null and to_regclass('ml.runs') is not null")
    if pushed_at is None or not cur.fetchone()[0]:
        return {}
    cur.execute(_COPYABLE, {"run": run_id, "previous": previous, "pushed_at": pushed_at})
    users = [row[0] for row in cur.fetchall()]
    copied: dict[str, list] = {kind: [] for kind in RECS_KINDS}
    for first in range(0, len(users), batch_keys):
        # for_you first: every published user has that list, so a key the previous push lacks means it did not
        # publish the user, whose other lists are then written from the warehouse too
        batch = _copy_keys(client, previous, run_id, "recs", users[first : first + batch_keys], prefix)
        copied["recs"] += batch
        for kind in RECS_KINDS.keys() - {"recs"}:  # a user without a buy_again list has no key to copy
            copied[kind] += _copy_keys(client, previous, run_id, kind, batch, prefix)
    return copied


def _copy_keys(client, source_run: str, run_id: str, kind: str, entities: list[str], prefix: str) -> list[str]:
    """``COPY`` each entity's ``kind`` key of ``source_run`` to ``run_id`` (one pipeline); the entities copied."""
    pipe = client.pipeline(transaction=False)
    for entity in entities:
        pipe.copy(run_key(source_run, kind, entity, prefix), run_key(run_id, kind, entity, prefix), replace=True)
    return [entity for entity, done in zip(entities, pipe.execute(), strict=True) if done]


def _write_kind(conn, client, run_id: str, kind: str, prefix: str, batch_rows: int, copied: list[str] | None) -> int:
    """Stream one kind's (key, JSON) rows from a named cursor into Redis, one ``MSET`` per batch; the users of
    ``copied`` (lists copied from the previous push) are left out."""
    source = _KINDS[kind]
    if copied:
        source = sql.SQL("select * from ({}) as built (entity_id, value) where not (entity_id = any({}))").format(
            source, sql.Literal(copied)
        )
    query = sql.SQL("select {} || entity_id, value from ({}) as source(entity_id, value)").format(
        sql.Literal(f"{prefix}:{run_id}:{kind}:"), source
    )
    written = 0
    with conn.cursor(name=f"online_{kind}") as cur:
        cur.itersize = batch_rows
        cur.execute(query)
        while batch := cur.fetchmany(batch_rows):
            client.mset(dict(batch))
            written += len(batch)
    return written


def _expire_run(client, run_id: str, prefix: str, grace_seconds: int, batch_keys: int = 1_000) -> int:
    """Give every key of ``run_id`` that has none an expiry of ``grace_seconds``; return the keys seen."""
    seen = 0
    keys = []
    for key in client.scan_iter(match=f"{prefix}:{run_id}:*", count=batch_keys):
        keys.append(key)
        if len(keys) == batch_keys:
            seen += _expire_keys(client, keys, grace_seconds)
            keys = []
    return seen + _expire_keys(client, keys, grace_seconds)


def _expire_keys(client, keys: list, grace_seconds: int) -> int:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.expire(key, grace_seconds, nx=True)
    pipe.execute()
    return len(keys)


def push_online(
    conn,
    client,
    run_id: str,
    prefix: str = PREFIX,
    grace_seconds: int = GRACE_SECONDS,
    batch_rows: int = BATCH_ROWS,
) -> dict:
    """Write the published run ``run_id`` to Redis, flip ``{prefix}:current`` to it, expire the other runs.

    Parameters
    ----------
    conn : psycopg2 connection
        The warehouse; read in one read-only repeatable-read transaction (one snapshot of ``recs``), which this
        function ends.
    client : redis.Redis
        The online store.
    run_id : str
        The run ``recs`` publishes (``recs.runs.is_published``); anything else raises :class:`OnlineStoreError`.
    prefix : str
        Namespace of every key (see the module docstring).
    grace_seconds : int
        Expiry given to the keys of the previous run (and of any run never made current) after the flip.
    batch_rows : int
        Rows fetched from Postgres and written with one ``MSET`` at a time.

    Returns
    -------
    dict
        ``run_id``, the ``previous`` run id, the keys written per kind (copied ones included) and ``copied``
        (the users whose lists were copied from the previous push), for XCom.
    """
    try:
        with conn.cursor() as cur:
            cur.execute("set transaction isolation level repeatable read, read only")
            locks.hold_off_erasure(cur)  # an erasure waits until the push is done, then deletes what it wrote
            _check_published(cur, run_id)
            cur.execute("select now()")  # the snapshot's time: a list run re-run after it is not copied next time
            snapshot_at = cur.fetchone()[0]
            client.sadd(f"{prefix}:runs", run_id)
            current = client.get(f"{prefix}:current")
            copied = _copy_lists(cur, client, run_id, current and current.decode(), prefix, batch_rows)
        counts = {
            kind: len(copied.get(kind, []))
            + _write_kind(conn, client, run_id, kind, prefix, batch_rows, copied.get(kind))
            for kind in _KINDS
        }
        meta = {
            "run_id": run_id,
            "users": counts["recs"],
            "profiles": counts["profile"],
            "items": counts["similar"],
            "placements": {placement: counts[kind] for kind, placement in RECS_KINDS.items()},
            "pushed_at": snapshot_at.isoformat(),
        }
        client.set(f"{prefix}:{run_id}:meta", json.dumps(meta))
        previous = client.set(f"{prefix}:current", run_id, get=True)
    finally:
        conn.rollback()
    previous = previous.decode() if previous is not None else None
    for stale in {member.decode() for member in client.smembers(f"{prefix}:runs")} - {run_id}:
        expired = _expire_run(client, stale, prefix, grace_seconds)
        client.srem(f"{prefix}:runs", stale)
        log.info("run %s: %d keys expire in %d s", stale, expired, grace_seconds)
    counts["copied"] = len(copied.get("recs", []))
    log.info("online store now serves run %s (was %s): %s", run_id, previous, counts)
    return {"run_id": run_id, "previous": previous, **counts}


def read_current(client, kind: str, entity_id: str, prefix: str = PREFIX) -> tuple[str | None, object]:
    """Follow the pointer: the current run id and its decoded value for (``kind``, ``entity_id``).

    Returns ``(None, None)`` before the first push and ``(run_id, None)`` when the run has no such key.
    """
    run_id = client.get(f"{prefix}:current")
    if run_id is None:
        return None, None
    run_id = run_id.decode()
    value = client.get(run_key(run_id, kind, entity_id, prefix))
    return run_id, json.loads(value) if value is not None else None


def forget_user(client, user_id: str, prefix: str = PREFIX) -> int:
    """Delete one user's keys (the lists of every placement and the profile) of every run still in Redis.

    Scans for ``{prefix}:*:{kind}:{user_id}`` for every kind of :data:`RECS_KINDS` and ``profile``, so the
    previous run's keys in their grace period go too; returns the keys deleted. Called by the erasure
    (``recsys erase-user``, the ``user_erasure`` DAG) when ``REDIS_URL`` is set.
    """
    kinds = [*RECS_KINDS, "profile"]
    keys = [key for kind in kinds for key in client.scan_iter(match=f"{prefix}:*:{kind}:{user_id}")]
    return int(client.delete(*keys)) if keys else 0


def get_recommendations(
    client, user_id: str, prefix: str = PREFIX, placement: str = placements.DEFAULT
) -> list[dict] | None:
    """The current run's ``placement`` list for the pseudonymous ``user_id`` in rank order, or ``None``.

    Each entry is ``{"item_id", "score", "reason_code", "reason_text"}``. A user without a list (new, or opted
    out; for ``buy_again``, nothing bought yet) gets ``None``: serve the cold-start list instead (or, for
    ``buy_again``, no shelf).
    """
    return read_current(client, placement_kind(placements.resolve(placement)), user_id, prefix)[1]
