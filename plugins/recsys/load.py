"""Load a landing directory into the ``raw`` schema, one batch at a time.

Each file is streamed with pyarrow's CSV reader (block by block, so memory
stays flat for any file size), checked row by row in vectorized pandas, and
written with ``COPY``. Rows that cannot be used as they are land in
``quality.rejected_rows`` with the reason and the row as JSON:

- a line with the wrong number of fields;
- bytes that are not UTF-8 (the whole file is then decoded leniently and the
  affected rows rejected);
- an empty required value;
- a value that does not parse as its column's type (timestamp, numeric,
  integer, boolean).

The stored row has its PII values (e-mail, phone) redacted.

Strings are kept exactly as landed (trimming and normalizing is dbt's job).
One ``quality.load_audit`` row per file says rows read, loaded and rejected,
and read = loaded + rejected always holds. A batch is loaded in one
transaction and loading the same batch again replaces it, so a crash or a
re-run never leaves half a batch or duplicates.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from recsys import landing

log = logging.getLogger(__name__)

PG_TYPES = {"text": "text", "timestamp": "timestamptz", "numeric": "numeric", "integer": "bigint", "boolean": "boolean"}
META_COLUMNS = (
    "_batch_id text not null, _source_file text not null, _row_number bigint not null,"
    " _loaded_at timestamptz not null default now()"
)
TRUE_VALUES = {"true", "t", "1", "yes", "y"}
FALSE_VALUES = {"false", "f", "0", "no", "n"}
BLOCK_SIZE = 32 << 20

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
    primary key (batch_id, table_name),
    check (rows_read = rows_loaded + rows_rejected)
);
create table if not exists quality.rejected_rows (
    batch_id text not null,
    table_name text not null,
    source_file text not null,
    line_number bigint,
    reason text not null,
    raw_record text
);
create index if not exists rejected_rows_batch on quality.rejected_rows (batch_id, table_name);
"""


class LandingError(ValueError):
    """A landing file that cannot be loaded at all (missing, empty, wrong header)."""


@dataclass
class FileResult:
    table_name: str
    source_file: str
    rows_read: int = 0
    rows_loaded: int = 0
    rejected: list[pd.DataFrame] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def rows_rejected(self) -> int:
        return sum(len(frame) for frame in self.rejected)


def create_raw_tables(conn) -> None:
    """Create the ``raw`` and ``quality`` tables from the landing format (idempotent)."""
    with conn.cursor() as cur:
        cur.execute(QUALITY_DDL)
        for spec in landing.FILES.values():
            columns = ", ".join(f"{column.name} {PG_TYPES[column.type]}" for column in spec.columns)
            cur.execute(f"create table if not exists raw.{spec.name} ({columns}, {META_COLUMNS})")
            cur.execute(f"create index if not exists {spec.name}_batch on raw.{spec.name} (_batch_id)")


def batch_directory(landing_dir: Path, batch_id: str) -> Path:
    """The folder holding a batch: ``landing_dir/<batch_id>`` if it exists, else ``landing_dir`` itself."""
    landing_dir = Path(landing_dir)
    candidate = landing_dir / batch_id
    return candidate if candidate.is_dir() else landing_dir


def load_landing(conn, landing_dir: Path, batch_id: str) -> list[dict]:
    """Load every landing file of a batch into ``raw``, replacing the batch if it was loaded before.

    Parameters
    ----------
    conn : psycopg2 connection
        Committed once at the end; nothing is visible if any file fails.
    landing_dir : Path
        A landing directory (see :mod:`recsys.landing`), or a parent holding ``<batch_id>/`` folders.
    batch_id : str
        The batch key, normally the data interval's date.

    Returns
    -------
    list of dict
        One load-audit row per file.

    Raises
    ------
    LandingError
        A required file is missing, a file is empty, or its header lacks required columns.
    """
    directory = batch_directory(landing_dir, batch_id)
    landing.read_manifest(directory)
    create_raw_tables(conn)
    audits = []
    try:
        with conn.cursor() as cur:
            for spec in landing.FILES.values():
                path = directory / spec.filename
                if not path.exists():
                    if spec.required:
                        raise LandingError(f"{path}: required landing file is missing")
                    continue
                _delete_batch(cur, spec.name, batch_id)
                result = _load_file(cur, spec, path, batch_id)
                audits.append(_write_audit(cur, result, batch_id))
                log.info(
                    "%s: read %d, loaded %d, rejected %d",
                    path,
                    result.rows_read,
                    result.rows_loaded,
                    result.rows_rejected,
                )
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    return audits


def _delete_batch(cur, table: str, batch_id: str) -> None:
    cur.execute(f"delete from raw.{table} where _batch_id = %s", (batch_id,))
    cur.execute("delete from quality.rejected_rows where batch_id = %s and table_name = %s", (batch_id, table))
    cur.execute("delete from quality.load_audit where batch_id = %s and table_name = %s", (batch_id, table))


def _read_header(path: Path) -> list[str]:
    with path.open("rb") as handle:
        first = handle.readline().decode("utf-8", errors="replace").lstrip("\ufeff")
    if not first.strip():
        raise LandingError(f"{path}: the file is empty (a landing file needs at least a header row)")
    return [name.strip() for name in next(csv.reader([first]))]


def _is_utf8(path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(BLOCK_SIZE):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _load_file(cur, spec: landing.LandingFile, path: Path, batch_id: str) -> FileResult:
    header = _read_header(path)
    if len(set(header)) != len(header):
        raise LandingError(f"{path}: duplicate column names in header {header}")
    missing = [column.name for column in spec.columns if column.required and column.name not in header]
    if missing:
        raise LandingError(f"{path}: missing required column(s) {missing}; the header has {header}")
    result = FileResult(
        spec.name, path.name, ignored_columns=[name for name in header if name not in spec.column_names]
    )
    utf8 = _is_utf8(path)
    if not utf8:
        log.warning("%s: not valid UTF-8; rows with invalid bytes will be rejected", path)

    bad_lines: list[dict] = []

    def on_invalid_row(row) -> str:
        bad_lines.append(
            {
                "line_number": row.number if row.number >= 0 else None,
                "reason": f"expected {row.expected_columns} fields, got {row.actual_columns}",
                "raw_record": row.text,
            }
        )
        return "skip"

    column_type = pa.string() if utf8 else pa.binary()
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=BLOCK_SIZE, use_threads=False),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid_row),
        convert_options=pacsv.ConvertOptions(
            column_types={name: column_type for name in header}, null_values=[""], strings_can_be_null=True
        ),
    )
    columns = [column for column in spec.columns if column.name in header]
    for record_batch in reader:
        frame = record_batch.to_pandas()
        if not utf8:
            frame = _decode_leniently(frame)
        start = result.rows_read + 1
        typed, reasons = _check(frame, spec, columns, check_utf8=not utf8)
        ok = reasons.isna()
        result.rows_read += len(frame)
        if (~ok).any():
            rejected = pd.DataFrame(
                {
                    "line_number": pd.NA,
                    "reason": reasons[~ok].to_numpy(),
                    "raw_record": _redact(frame.loc[~ok, header], spec)
                    .to_json(orient="records", lines=True)
                    .splitlines(),
                }
            )
            result.rejected.append(rejected)
        good = typed.loc[ok].copy()
        good["_row_number"] = (pd.RangeIndex(len(frame))[ok.to_numpy()] + start).to_numpy()
        _copy_rows(cur, spec, columns, good, batch_id, path.name)
        result.rows_loaded += len(good)
    if bad_lines:
        result.rejected.append(pd.DataFrame(bad_lines))
        result.rows_read += len(bad_lines)
    if result.rejected:
        _copy_rejects(cur, result, batch_id)
    return result


def _redact(rows: pd.DataFrame, spec: landing.LandingFile) -> pd.DataFrame:
    """Rejected rows without their PII values (e-mail, phone): ``quality`` must not hold raw PII."""
    pii = [column.name for column in spec.columns if column.pii and column.name in rows]
    return rows.assign(**{name: rows[name].where(rows[name].isna(), "<redacted>") for name in pii})


def _decode_leniently(frame: pd.DataFrame) -> pd.DataFrame:
    """Decode binary columns as UTF-8, marking cells with invalid bytes by a U+FFFD replacement character."""
    return frame.apply(lambda column: column.str.decode("utf-8", errors="replace"))


def _check(frame: pd.DataFrame, spec: landing.LandingFile, columns: list[landing.Column], check_utf8: bool):
    """Parse the typed columns; return the typed frame and a reason per row (NA when the row is fine)."""
    reasons = pd.Series(pd.NA, index=frame.index, dtype="object")

    def flag(mask: pd.Series, reason: pd.Series | str) -> None:
        new = mask & reasons.isna()
        reasons.loc[new] = reason[new] if isinstance(reason, pd.Series) else reason

    typed = pd.DataFrame(index=frame.index)
    for column in columns:
        values = frame[column.name]
        present = values.notna()
        if check_utf8:
            flag(values.str.contains("\ufffd", regex=False, na=False), f"{column.name}: invalid UTF-8 bytes")
        if column.required:
            flag(~present, f"missing required value: {column.name}")
        parsed, failed = _parse(values, column.type)
        flag(present & failed, column.name + ": cannot parse " + repr_values(values) + f" as {column.type}")
        typed[column.name] = parsed
    if spec.name == "events":
        no_item = (
            frame["event_type"].str.strip().str.lower().ne("search")
            & typed.get("item_id", pd.Series(pd.NA, index=frame.index)).isna()
        )
        flag(no_item, "missing required value: item_id (only search events may omit it)")
    return typed, reasons


def repr_values(values: pd.Series) -> pd.Series:
    return "'" + values.fillna("").str.slice(0, 80) + "'"


def _parse(values: pd.Series, kind: str) -> tuple[pd.Series, pd.Series]:
    """Parse a string column as ``kind``; return the parsed values and a mask of unparseable cells."""
    if kind == "text":
        return values, pd.Series(False, index=values.index)
    stripped = values.str.strip()
    if kind == "timestamp":
        parsed = pd.to_datetime(stripped, utc=True, errors="coerce", format="ISO8601")
    elif kind == "numeric":
        parsed = pd.to_numeric(stripped, errors="coerce")
        parsed = parsed.where(pd.Series(parsed).abs() < 1e15)
    elif kind == "integer":
        number = pd.to_numeric(stripped, errors="coerce")
        number = number.where((number % 1 == 0) & (number.abs() < 2**62))
        parsed = number.astype("Int64")
    elif kind == "boolean":
        lowered = stripped.str.lower()
        parsed = lowered.isin(TRUE_VALUES).where(lowered.isin(TRUE_VALUES | FALSE_VALUES)).astype("boolean")
    else:
        raise ValueError(f"unknown landing type {kind!r}")
    return parsed, pd.Series(parsed).isna() & values.notna()


def _copy_rows(cur, spec, columns, good: pd.DataFrame, batch_id: str, source_file: str) -> None:
    if good.empty:
        return
    good = good.assign(_batch_id=batch_id, _source_file=source_file)
    names = [column.name for column in columns] + ["_batch_id", "_source_file", "_row_number"]
    buffer = io.StringIO()
    good[names].to_csv(buffer, index=False, header=False, date_format="%Y-%m-%dT%H:%M:%S.%f%z")
    buffer.seek(0)
    cur.copy_expert(
        f"copy raw.{spec.name} ({', '.join(names)}) from stdin with (format csv)",
        buffer,
    )


def _copy_rejects(cur, result: FileResult, batch_id: str) -> None:
    rejected = pd.concat(result.rejected, ignore_index=True)
    rejected = rejected.assign(batch_id=batch_id, table_name=result.table_name, source_file=result.source_file)
    names = ["batch_id", "table_name", "source_file", "line_number", "reason", "raw_record"]
    rejected["line_number"] = rejected["line_number"].astype("Int64")
    buffer = io.StringIO()
    rejected[names].to_csv(buffer, index=False, header=False)
    buffer.seek(0)
    cur.copy_expert(f"copy quality.rejected_rows ({', '.join(names)}) from stdin with (format csv)", buffer)


def _write_audit(cur, result: FileResult, batch_id: str) -> dict:
    row = {
        "batch_id": batch_id,
        "table_name": result.table_name,
        "source_file": result.source_file,
        "rows_read": result.rows_read,
        "rows_loaded": result.rows_loaded,
        "rows_rejected": result.rows_rejected,
        "ignored_columns": ",".join(result.ignored_columns) or None,
    }
    cur.execute(
        "insert into quality.load_audit (batch_id, table_name, source_file, rows_read, rows_loaded, rows_rejected,"
        " ignored_columns) values (%(batch_id)s, %(table_name)s, %(source_file)s, %(rows_read)s, %(rows_loaded)s,"
        " %(rows_rejected)s, %(ignored_columns)s)",
        row,
    )
    return row
