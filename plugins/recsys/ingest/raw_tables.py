"""The ``raw`` and ``quality`` tables the loader writes: their DDL, created only when something is missing."""

from __future__ import annotations

from psycopg2 import errors, sql

from recsys.ingest import landing
from recsys.ingest.landing import LandingError

PG_TYPES = {"text": "text", "timestamp": "timestamptz", "numeric": "numeric", "integer": "bigint", "boolean": "boolean"}
META_COLUMNS = (
    "_batch_id text not null, _source_file text not null, _row_number bigint not null,"
    " _loaded_at timestamptz not null default now(), _load_seq bigint"
)
#: the column of the batch's load sequence (``quality.batches.load_seq``), added to tables made before it
LOAD_SEQ = ("_load_seq", "bigint")
#: how long schema changes of the raw tables wait for readers before the load gives up
DDL_LOCK_TIMEOUT = "10s"

QUALITY_DDL = """
create schema if not exists raw;
create schema if not exists quality;
create table if not exists quality.load_audit (
    batch_id text not null,
    table_name text not null,
    source_file text not null,
    rows_read bigint not null,
    rows_loaded bigint not null,
    rows_rejected bigint not null,
    ignored_columns text,
    loaded_at timestamptz not null default now(),
    primary key (batch_id, table_name)
);
-- a snapshot's rows equal to their stored version are read but neither loaded nor rejected (recsys.ingest.load)
alter table quality.load_audit add column if not exists rows_unchanged bigint not null default 0;
alter table quality.load_audit drop constraint if exists load_audit_check;
do $reconcile$
begin
    if not exists (select from pg_constraint where conname = 'load_audit_rows_reconcile') then
        alter table quality.load_audit add constraint load_audit_rows_reconcile
            check (rows_read = rows_loaded + rows_rejected + rows_unchanged);
    end if;
end
$reconcile$;
create table if not exists quality.rejected_rows (
    batch_id text not null,
    table_name text not null,
    source_file text not null,
    line_number bigint,
    reason text not null,
    raw_record text
);
alter table quality.load_audit add column if not exists file_sha256 text;
create index if not exists rejected_rows_batch on quality.rejected_rows (batch_id, table_name);
-- every batch id gets a sequence number at its first load, kept when the batch is delivered again: "the latest
-- batch wins" in staging means the latest to arrive, whatever the batch ids are called
create table if not exists quality.batches (
    batch_id text primary key,
    load_seq bigint generated always as identity,
    first_loaded_at timestamptz not null default now()
);
-- one shop per warehouse: the landing directory its batches come from (recsys.ingest.load)
create table if not exists quality.landing_source (
    only_row boolean primary key default true check (only_row),
    landing_dir text not null,
    first_loaded_at timestamptz not null default now()
);
"""


def create_raw_tables(conn) -> None:
    """Create the ``raw`` and ``quality`` tables, columns and indexes that are missing, and commit.

    DDL takes an exclusive lock on its table, which would queue every reader (dbt, the gates, an erasure)
    behind the load: so it runs only when something is missing, in a short transaction of its own, and gives
    up after :data:`DDL_LOCK_TIMEOUT` when a reader holds the table, with a clear error.
    """
    if not _missing_raw_objects(conn):
        return
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("set local lock_timeout = {}").format(sql.Literal(DDL_LOCK_TIMEOUT)))
            cur.execute(QUALITY_DDL)
            for spec in landing.ALL_FILES.values():
                columns = sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(column.name), sql.SQL(PG_TYPES[column.type]))
                    for column in spec.columns
                )
                table = sql.Identifier("raw", spec.name)
                cur.execute(
                    sql.SQL("create table if not exists {} ({}, {})").format(table, columns, sql.SQL(META_COLUMNS))
                )
                # a column the format gained later (e.g. events.device_id), and the load sequence
                for name, type_ in [*((column.name, PG_TYPES[column.type]) for column in spec.columns), LOAD_SEQ]:
                    cur.execute(
                        sql.SQL("alter table {} add column if not exists {} {}").format(
                            table, sql.Identifier(name), sql.SQL(type_)
                        )
                    )
                cur.execute(
                    sql.SQL("create index if not exists {} on {} (_batch_id)").format(
                        sql.Identifier(f"{spec.name}_batch"), table
                    )
                )
        conn.commit()
    except errors.LockNotAvailable as error:
        conn.rollback()
        raise LandingError(
            f"the raw tables need new columns or indexes, but a reader held them for {DDL_LOCK_TIMEOUT}: load again"
            " when dbt and the quality checks are done"
        ) from error


def _missing_raw_objects(conn) -> bool:
    """Whether a table, column or index :func:`create_raw_tables` makes is missing (catalog reads, no locks)."""
    with conn.cursor() as cur:
        cur.execute(
            "select table_schema || '.' || table_name || '.' || column_name from information_schema.columns"
            " where table_schema in ('raw', 'quality')"
        )
        present = {row[0] for row in cur.fetchall()}
        cur.execute("select schemaname || '.' || indexname from pg_indexes where schemaname in ('raw', 'quality')")
        present |= {row[0] for row in cur.fetchall()}
    conn.rollback()
    wanted = {f"quality.{table}.batch_id" for table in ("load_audit", "rejected_rows")}
    wanted |= {"quality.landing_source.landing_dir", "quality.rejected_rows_batch", "quality.load_audit.file_sha256"}
    wanted |= {"quality.batches.load_seq", "quality.load_audit.rows_unchanged"}
    for spec in landing.ALL_FILES.values():
        wanted |= {f"raw.{spec.name}.{column.name}" for column in spec.columns} | {f"raw.{spec.name}_batch"}
        wanted |= {f"raw.{spec.name}._load_seq"}
    return bool(wanted - present)
