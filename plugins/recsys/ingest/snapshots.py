"""Snapshot files (users, items, promotions) delivered whole: only the rows that changed are stored."""

from __future__ import annotations

from psycopg2 import sql

from recsys.ingest import landing


def drop_unchanged(cur, spec: landing.LandingFile, batch_id: str, load_seq: int) -> int:
    """Delete the batch's snapshot rows equal in every landing column to their key's latest earlier version.

    A shop delivers its users and items whole every day: stored again, every delivery would add a copy of every
    user for staging to read (days x users rows). The earlier version is the latest stored row of the trimmed
    key (as staging keys versions) from an earlier batch, ordered as staging orders versions; a key that occurs
    more than once in the batch keeps all its rows, so staging still picks the batch's last one. The rows kept
    are exactly those that can change what staging picks. Rows compare as text (``row(...)::text``): a value
    written differently (a price of 12.5, then 12.50) counts as a change and is stored, which is always safe.

    One window over the key's versions (the batch's rows sorted after the earlier ones, so ``lag`` is the latest
    earlier version), then the rows it picks deleted by their ``ctid`` (a TID scan): no join whose plan could
    follow a wrong estimate of the batch's rows into a nested loop (one did: minutes for 100,000 users). Returns
    the rows deleted.
    """
    table = sql.Identifier("raw", spec.name)
    key = sql.SQL("nullif(trim({}), '')").format(sql.Identifier(spec.snapshot_key))
    content = sql.SQL("row({})::text").format(sql.SQL(", ").join(map(sql.Identifier, spec.column_names)))
    cur.execute(
        sql.SQL(
            "with versions as ("
            " select ctid as row_ref, _batch_id = %(batch)s as is_new, {content} as content,"
            " lag({content}) over versions as earlier_content,"
            " count(*) filter (where _batch_id = %(batch)s) over (partition by {key}) as new_copies"
            " from {table}"
            " where {key} is not null and (_batch_id = %(batch)s or _load_seq < %(seq)s or _load_seq is null)"
            " window versions as (partition by {key} order by _batch_id = %(batch)s, _load_seq nulls first,"
            " _batch_id, _loaded_at, _row_number)),"
            " dropped as ("
            " delete from {table} where ctid = any(array("
            " select row_ref from versions where is_new and new_copies = 1 and content = earlier_content))"
            " returning 1)"
            " select count(*) from dropped"
        ).format(key=key, content=content, table=table),
        {"batch": batch_id, "seq": load_seq},
    )
    return cur.fetchone()[0]
