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
    are exactly those that can change what staging picks. Returns the rows deleted.
    """
    key = sql.SQL("nullif(trim({}), '')").format(sql.Identifier(spec.snapshot_key))
    columns = sql.SQL(", ").join(map(sql.Identifier, spec.column_names))
    cur.execute(
        sql.SQL(
            "with latest as ("
            " select distinct on ({key}) {key} as snapshot_key, {columns} from {table}"
            " where _batch_id <> %(batch)s and (_load_seq < %(seq)s or _load_seq is null)"
            " order by {key}, _load_seq desc nulls last, _batch_id desc, _loaded_at desc, _row_number desc),"
            " single as ("
            " select {key} as snapshot_key from {table} where _batch_id = %(batch)s group by 1 having count(*) = 1),"
            " dropped as ("
            " delete from {table} as new using latest, single"
            " where new._batch_id = %(batch)s and {new_key} = latest.snapshot_key"
            " and latest.snapshot_key = single.snapshot_key"
            " and ({new_columns}) is not distinct from ({latest_columns}) returning 1)"
            " select count(*) from dropped"
        ).format(
            key=key,
            new_key=sql.SQL("nullif(trim({}), '')").format(sql.Identifier("new", spec.snapshot_key)),
            columns=columns,
            table=sql.Identifier("raw", spec.name),
            new_columns=sql.SQL(", ").join(sql.Identifier("new", name) for name in spec.column_names),
            latest_columns=sql.SQL(", ").join(sql.Identifier("latest", name) for name in spec.column_names),
        ),
        {"batch": batch_id, "seq": load_seq},
    )
    return cur.fetchone()[0]
