"""Load a landing directory into the ``raw`` schema, one batch at a time.

Each file is streamed with pyarrow's CSV reader (block by block, so memory
stays flat for any file size), checked row by row with vectorized Arrow
compute functions (pandas parses the typed columns), and written with Arrow's
CSV writer into ``COPY``. Rows that cannot be used as they are land in
``quality.rejected_rows`` with the reason and the row as JSON:

- a line with the wrong number of fields (an unclosed quote makes one record
  of the following lines: the reason then says so);
- the last record of a file that ends inside a quoted field (a truncated file);
- bytes that are not UTF-8 (the whole file is then decoded leniently and the
  affected rows rejected);
- an empty or blank required value;
- a NUL character, or a value longer than ``landing.MAX_VALUE_CHARS``;
- a value that does not parse as its column's type (timestamp, numeric,
  integer, boolean).

The stored row has its PII values (e-mail, phone) redacted and values over the
length limit shortened; a line that does not parse, of a file with PII columns, is
stored as its SHA-256 and length only (its fields cannot be told apart).
``line_number`` is the record's number in the file, the header being 1 (blank
lines and line breaks inside quoted values do not count). A file that cannot be
read as CSV at all (empty, a header without a required column, a record longer
than the read block) fails the whole batch with a :class:`LandingError` naming
the file.

Strings are kept exactly as landed (trimming and normalizing is dbt's job).
One ``quality.load_audit`` row per file says rows read, loaded, rejected and
unchanged (a snapshot's rows equal to their stored version, see
:func:`recsys.ingest.snapshots.drop_unchanged`), and read = loaded + rejected +
unchanged always holds. A batch is loaded in one transaction and loading the
same batch again replaces it, so a crash or a re-run never leaves half a batch
or duplicates.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg2 import sql

from recsys.db import keystore, locks
from recsys.ingest import deliveries, landing, snapshots
from recsys.ingest.landing import LandingError
from recsys.ingest.parsing import check_encoding
from recsys.ingest.raw_tables import create_raw_tables

log = logging.getLogger(__name__)

TRUE_VALUES = {"true", "t", "1", "yes", "y"}
FALSE_VALUES = {"false", "f", "0", "no", "n"}
BLOCK_SIZE = 32 << 20
#: quarantined lines that did not parse are written in batches of this many rows
QUARANTINE_BATCH_ROWS = 10_000
#: characters of an over-long value kept in ``quality.rejected_rows.raw_record``
QUARANTINE_VALUE_CHARS = 1_000
TRUNCATED = "the file ends inside a quoted field: it is probably truncated (deliver the whole file again)"


@dataclass
class FileResult:
    table_name: str
    source_file: str
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    ignored_columns: list[str] = field(default_factory=list)

    rows_erased: int = 0
    rows_unchanged: int = 0
    sha256: str | None = None

    @property
    def rows_rejected(self) -> int:
        """Quarantined rows, plus the rows of erased users (dropped after parsing, see :func:`_drop_erased`)."""
        return self.rows_quarantined + self.rows_erased


def batch_directory(landing_dir: Path, batch_id: str) -> Path:
    """The folder holding a batch: ``landing_dir/<batch_id>`` if it exists, else ``landing_dir`` itself."""
    landing_dir = Path(landing_dir)
    candidate = landing_dir / batch_id
    return candidate if candidate.is_dir() else landing_dir


def load_new_days(conn, landing_dir: Path, key: str | None = None, before: str | None = None) -> list[str]:
    """Load every day folder of ``landing_dir`` not loaded yet (``quality.batches``), oldest first.

    Each day is its own batch, named by its folder: ``<YYYY-MM-DD>``, then the serving API's events of that
    day, ``api-<YYYY-MM-DD>``. ``before`` (a date) stops at that day: the DAG run that follows loads it
    itself. Returns the batch ids loaded.
    """
    with conn.cursor() as cur:
        cur.execute("select to_regclass('quality.batches') is not null")
        loaded = set()
        if cur.fetchone()[0]:
            cur.execute("select batch_id from quality.batches")
            loaded = {row[0] for row in cur.fetchall()}
    conn.rollback()
    folders = deliveries.day_folders(landing_dir) + deliveries.day_folders(landing_dir, api=True)
    days = sorted(
        (folder for folder in folders if folder not in loaded),
        key=lambda folder: (folder.removeprefix(landing.API_BATCH_PREFIX), folder.startswith(landing.API_BATCH_PREFIX)),
    )
    days = [day for day in days if before is None or day.removeprefix(landing.API_BATCH_PREFIX) < before]
    for day in days:
        load_landing(conn, landing_dir, day, key)
        log.info("loaded the day folder %s", day)
    return days


def load_landing(conn, landing_dir: Path, batch_id: str, key: str | None = None) -> list[dict]:
    """Load every landing file of a batch into ``raw``, replacing the batch if it was loaded before.

    Parameters
    ----------
    conn : psycopg2 connection
        Committed once at the end; nothing is visible if any file fails. Every table loses its rows of
        ``batch_id`` first, so a table whose file the new delivery lacks keeps none.
    landing_dir : Path
        A landing directory (see :mod:`recsys.ingest.landing`), or a parent holding ``<batch_id>/`` folders.
    batch_id : str
        The batch key, normally the data interval's date.
    key : str, optional
        The pseudonymization key (default ``RECSYS_PSEUDONYM_KEY``): stored in the warehouse's keystore
        (:func:`recsys.db.keystore.install_key`) for dbt, and used to drop erased users' re-delivered rows.

    Returns
    -------
    list of dict
        One load-audit row per file.

    Raises
    ------
    LandingError
        A required file is missing, a file is empty, its header lacks required columns, or it cannot be read
        as CSV (a record longer than the read block).
    ValueError
        No usable key (:func:`recsys.db.keystore.check_key`), or not the key the warehouse was built with.
    """
    directory = batch_directory(landing_dir, batch_id)
    expected_rows = landing.read_manifest(directory).get("rows", {})
    keystore.install_key(conn, key or keystore.key_from_environment())
    create_raw_tables(conn)
    audits = []
    erased_orders: list[str] = []
    try:
        with conn.cursor() as cur:
            locks.hold_off_erasure(cur)  # an erasure in flight commits first: its users are dropped below
            deliveries.check_source(cur, Path(landing_dir))
            load_seq = deliveries.load_sequence(cur, batch_id)
            erasures = _has_erasures(cur)
            for spec in landing.ALL_FILES.values():
                path = directory / spec.filename
                _delete_batch(cur, spec.name, batch_id)  # a re-delivery replaces the whole batch, every table
                if not path.exists():
                    if spec.required or expected_rows.get(spec.name):
                        raise LandingError(
                            f"{path}: required landing file is missing (write it with its header row even when"
                            " it has no rows)"
                        )
                    continue
                digest = deliveries.file_sha256(path)
                if spec.name == "events":
                    deliveries.refuse_redelivery(cur, path, digest, batch_id)
                result = _load_file(cur, spec, path, batch_id, load_seq)
                result.sha256 = digest
                if spec.name in expected_rows and expected_rows[spec.name] != result.rows_read:
                    raise LandingError(
                        f"{path}: the manifest says {expected_rows[spec.name]} rows, the file has {result.rows_read}:"
                        " the delivery is incomplete or was changed after it was written; deliver it again"
                    )
                if spec.snapshot_key:
                    result.rows_unchanged = snapshots.drop_unchanged(cur, spec, batch_id, load_seq)
                    result.rows_loaded -= result.rows_unchanged
                if erasures:
                    result.rows_erased, orders = _drop_erased(cur, spec, batch_id, erased_orders)
                    result.rows_loaded -= result.rows_erased
                    erased_orders += orders
                audits.append(_write_audit(cur, result, batch_id))
                log.info(
                    "%s: read %d, loaded %d, rejected %d, unchanged %d",
                    path,
                    result.rows_read,
                    result.rows_loaded,
                    result.rows_rejected,
                    result.rows_unchanged,
                )
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    return audits


def _delete_batch(cur, table: str, batch_id: str) -> None:
    cur.execute(sql.SQL("delete from {} where _batch_id = %s").format(sql.Identifier("raw", table)), (batch_id,))
    cur.execute("delete from quality.rejected_rows where batch_id = %s and table_name = %s", (batch_id, table))
    cur.execute("delete from quality.load_audit where batch_id = %s and table_name = %s", (batch_id, table))


def _read_header(path: Path) -> list[str]:
    check_encoding(path)  # a UTF-16 file: a clear error, not a garbled header
    with path.open("rb") as handle:
        first = handle.readline().decode("utf-8", errors="replace").lstrip("\ufeff")
    if not first.strip():
        raise LandingError(
            f"{path}: the file is empty; a landing file needs at least its header row"
            " (write the header even when a batch has no rows)"
        )
    return [name.strip() for name in next(csv.reader([first]))]


def is_utf8(path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(BLOCK_SIZE):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _load_file(cur, spec: landing.LandingFile, path: Path, batch_id: str, load_seq: int) -> FileResult:
    header = _read_header(path)
    if len(set(header)) != len(header):
        raise LandingError(f"{path}: duplicate column names in header {header}")
    missing = [column.name for column in spec.columns if column.required and column.name not in header]
    if missing:
        raise LandingError(
            f"{path}: missing required column(s) {missing}; the header has {header}"
            " (line 1 must name the columns, see the landing format in docs/data/landing-format.md)"
        )
    result = FileResult(
        spec.name, path.name, ignored_columns=[name for name in header if name not in spec.column_names]
    )
    utf8 = is_utf8(path)
    if not utf8:
        log.warning("%s: not valid UTF-8; rows with invalid bytes will be rejected", path)
    bad_numbers: list[int | None] = []  # line numbers of the lines that did not parse, to number the others
    bad_lines: list[dict] = []  # their quarantine rows, written every QUARANTINE_BATCH_ROWS: memory stays bounded

    def on_invalid_row(row) -> str:
        lines = row.text.count("\n") + 1
        reason = f"expected {row.expected_columns} fields, got {row.actual_columns}"
        if lines > 1:
            reason += f"; the record runs over {lines} lines, so a quote is probably not closed"
        number = row.number if row.number >= 0 else None
        bad_numbers.append(number)
        bad_lines.append({"line_number": number, "reason": reason, "raw_record": _unparsed(row.text, spec)})
        if len(bad_lines) >= QUARANTINE_BATCH_ROWS:
            _copy_rejects(cur, result, pd.DataFrame(bad_lines), batch_id)
            bad_lines.clear()
        return "skip"

    column_type = pa.string() if utf8 else pa.binary()
    columns = [column for column in spec.columns if column.name in header]
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(  # names as read by _read_header: a name need not be UTF-8
                column_names=header, skip_rows=1, block_size=BLOCK_SIZE, use_threads=False
            ),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid_row),
            convert_options=pacsv.ConvertOptions(
                column_types={name: column_type for name in header}, null_values=[""], strings_can_be_null=True
            ),
        )
        for record_batch, is_last in with_last(reader):
            last_value = record_batch.column(header[-1])[-1].as_py() if record_batch.num_rows else None
            truncated = is_last and ends_inside_quotes(path, last_value)
            if not utf8:
                record_batch = _decode_leniently(record_batch)
            start = result.rows_read + 1
            typed, reasons = _check(record_batch, spec, columns, check_utf8=not utf8)
            if truncated:
                reasons[-1] = TRUNCATED
            ok = pd.isna(reasons)
            result.rows_read += record_batch.num_rows
            if not ok.all():
                numbers = line_numbers(bad_numbers, start, record_batch.num_rows)
                rejected = pd.DataFrame(
                    {
                        "line_number": numbers[~ok],
                        "reason": reasons[~ok],
                        "raw_record": _for_quarantine(record_batch.filter(~ok).to_pandas(), spec)
                        .to_json(orient="records", lines=True)
                        .splitlines(),
                    }
                )
                _copy_rejects(cur, result, rejected, batch_id)
            good = pa.table({**typed, "_row_number": np.arange(start, start + record_batch.num_rows)}).filter(ok)
            _copy_rows(cur, spec, good, _batch_id=batch_id, _source_file=path.name, _load_seq=load_seq)
            result.rows_loaded += good.num_rows
    except (pa.ArrowInvalid, UnicodeDecodeError) as error:
        raise LandingError(
            f"{path}: cannot be read as CSV ({error}); a record longer than {BLOCK_SIZE >> 20} MB (a huge value,"
            " or a quote that is never closed) causes this: fix the file and load the batch again"
        ) from error
    if bad_lines:
        _copy_rejects(cur, result, pd.DataFrame(bad_lines), batch_id)
    result.rows_read += len(bad_numbers)
    return result


def _has_erasures(cur) -> bool:
    """Whether any user was erased (``quality.erased_users`` has rows)."""
    cur.execute("select to_regclass('quality.erased_users') is not null")
    if not cur.fetchone()[0]:
        return False
    cur.execute("select exists (select from quality.erased_users)")
    return bool(cur.fetchone()[0])


def _drop_erased(cur, spec: landing.LandingFile, batch_id: str, erased_orders: list[str]) -> tuple[int, list]:
    """Delete the batch's rows of erased users from ``raw`` and log them as rejected ``erased_user`` without content.

    A row is an erased user's if the keyed hash of its ``user_id`` (or of either end of a social edge, as the dbt
    macro ``pseudonymize`` computes it, with the key of ``keystore``) is in ``quality.erased_users``; order
    lines go with their order (orders are loaded before order lines).

    Returns
    -------
    int, list of str
        Rows dropped, and the order ids of the dropped orders.
    """
    names = spec.column_names
    user_columns = [name for name in ("user_id", "from_user_id", "to_user_id") if name in names]
    if user_columns:
        condition = sql.SQL("({})").format(
            sql.SQL(" or ").join(
                sql.SQL(keystore.PSEUDONYMIZE_SQL.format(f"dropped.{name}") + " in (select user_key from {})").format(
                    sql.Identifier("quality", "erased_users")
                )
                for name in user_columns
            )
        )
    elif "order_id" in names and erased_orders:
        condition = sql.SQL("dropped.order_id = any({})").format(sql.Literal(erased_orders))
    else:
        return 0, []
    order_id = sql.SQL("dropped.order_id" if "order_id" in names else "null::text")
    cur.execute(
        sql.SQL(
            "with dropped as (delete from {table} as dropped where dropped._batch_id = {batch} and {condition}"
            " returning dropped._source_file, {order_id} as order_id),"
            " logged as (insert into quality.rejected_rows (batch_id, table_name, source_file, reason)"
            " select {batch}, {name}, _source_file, 'erased_user' from dropped)"
            " select order_id from dropped"
        ).format(
            table=sql.Identifier("raw", spec.name),
            batch=sql.Literal(batch_id),
            condition=condition,
            order_id=order_id,
            name=sql.Literal(spec.name),
        )
    )
    dropped = [row[0] for row in cur.fetchall()]
    if dropped:
        log.info("%s: dropped %d rows of erased users", spec.name, len(dropped))
    return len(dropped), [order for order in dropped if order is not None]


def with_last(iterable):
    """Yield ``(item, is_last)`` pairs, reading one item ahead."""
    iterator = iter(iterable)
    previous = next(iterator, None)
    for item in iterator:
        yield previous, False
        previous = item
    if previous is not None:
        yield previous, True


def ends_inside_quotes(path: Path, last_value: object) -> bool:
    """Whether the file ends inside a quoted field: its last bytes are an opening quote and the last value read.

    A quoted field the file closes ends in ``"`` (and maybe a line break); a truncated one ends in the value
    itself, which the CSV reader took up to the end of the file.
    """
    if not isinstance(last_value, (str, bytes)):
        return False
    tail = b'"' + (last_value.encode() if isinstance(last_value, str) else last_value)
    size = path.stat().st_size
    if size < len(tail):
        return False
    with path.open("rb") as handle:
        handle.seek(size - len(tail))
        return handle.read() == tail


def line_numbers(invalid: list, start: int, count: int) -> np.ndarray:
    """Record numbers (header = 1) of the parsed rows ``start .. start + count - 1``.

    The parsed rows take the record numbers the invalid records (skipped by the reader) leave free, in order.
    """
    invalid = np.array([number for number in invalid if number is not None], dtype=np.int64)
    candidates = np.arange(2, start + count + len(invalid) + 1)
    return candidates[~np.isin(candidates, invalid)][start - 1 : start - 1 + count]


def _for_quarantine(rows: pd.DataFrame, spec: landing.LandingFile) -> pd.DataFrame:
    """Rejected rows as stored: PII values (e-mail, phone) redacted, values over the length limit shortened."""
    too_long = rows.apply(lambda column: column.str.len() > landing.MAX_VALUE_CHARS).fillna(False).astype(bool)
    rows = rows.mask(too_long, rows.apply(lambda column: column.str.slice(0, QUARANTINE_VALUE_CHARS) + "..."))
    return _redact(rows, spec)


def _unparsed(text: str, spec: landing.LandingFile) -> str:
    """A line that does not parse, as stored: verbatim, or for a file with PII columns only its hash and length.

    Its fields cannot be told apart (a missing or extra field shifts the others), so an e-mail or phone
    could be anywhere in it: such a line keeps ``{"sha256": ..., "chars": ...}``, enough to find it in the
    delivered file and nothing more.
    """
    if not any(column.pii for column in spec.columns):
        return text
    return json.dumps({"sha256": hashlib.sha256(text.encode()).hexdigest(), "chars": len(text)})


def _redact(rows: pd.DataFrame, spec: landing.LandingFile) -> pd.DataFrame:
    """Rejected rows without their PII values (e-mail, phone): ``quality`` must not hold raw PII."""
    pii = [column.name for column in spec.columns if column.pii and column.name in rows]
    return rows.assign(**{name: rows[name].where(rows[name].isna(), "<redacted>") for name in pii})


def _decode_leniently(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Decode binary columns as UTF-8, marking cells with invalid bytes by a U+FFFD replacement character."""
    frame = batch.to_pandas().apply(lambda column: column.str.decode("utf-8", errors="replace"))
    schema = pa.schema([(name, pa.string()) for name in batch.schema.names])
    return pa.RecordBatch.from_pandas(frame, schema=schema, preserve_index=False)


def _check(batch: pa.RecordBatch, spec: landing.LandingFile, columns: list[landing.Column], check_utf8: bool):
    """Parse the typed columns; return them as Arrow arrays by name, and a reason per row (None when the row is fine).

    The checks run on whole Arrow columns; a reason's text is made only for the rows it is given to.
    """
    reasons = np.full(batch.num_rows, None, dtype=object)

    def flag(mask: pa.Array, reason: str, values: pa.Array | None = None) -> None:
        """Give ``reason`` to the rows of ``mask`` that have none yet; with ``values``, ``reason.format(value)``."""
        if not pc.any(mask).as_py():
            return
        rows = np.flatnonzero(pc.fill_null(mask, False).to_numpy(zero_copy_only=False) & pd.isna(reasons))
        if len(rows):
            reasons[rows] = (
                reason if values is None else [reason.format(value) for value in values.take(rows).to_pylist()]
            )

    typed = {}
    for column in columns:
        name, values = column.name, batch.column(column.name)
        if check_utf8:
            flag(pc.match_substring(values, "\ufffd"), f"{name}: invalid UTF-8 bytes")
        flag(pc.match_substring(values, "\x00"), f"{name}: contains a NUL character, which Postgres text cannot store")
        length = pc.utf8_length(values)
        flag(
            pc.greater(length, landing.MAX_VALUE_CHARS),
            f"{name}: a value of {{}} characters is longer than the limit of {landing.MAX_VALUE_CHARS}",
            length,
        )
        if column.required:
            flag(_blank(values), f"missing required value: {name}")
        typed[name], failed = _parse(values, column.type)
        flag(failed, f"{name}: cannot parse '{{:.80}}' as {column.type}", values)
    if spec.name == "events":
        item = batch.column("item_id") if "item_id" in batch.schema.names else pa.nulls(batch.num_rows, pa.string())
        not_search = pc.not_equal(pc.utf8_lower(pc.utf8_trim_whitespace(batch.column("event_type"))), "search")
        flag(
            pc.and_(pc.fill_null(not_search, True), _blank(item)),
            "missing required value: item_id (only search events may omit it)",
        )
    return typed, reasons


def _blank(values: pa.Array) -> pa.Array:
    """Where a value is missing or only white space (Arrow's white space is Python's ``str.isspace``)."""
    return pc.fill_null(pc.equal(pc.utf8_trim_whitespace(values), ""), True)


def _parse(values: pa.Array, kind: str) -> tuple[pa.Array, pa.Array]:
    """Parse a string column as ``kind``; return the values for ``COPY`` and a mask of unparseable cells.

    A timestamp is cut down to whole microseconds (the precision of Postgres), a numeric value goes through a float.
    """
    if kind == "text":
        return values, pa.repeat(False, len(values))
    stripped = pc.utf8_trim_whitespace(values).to_pandas()
    if kind == "timestamp":
        parsed = pd.to_datetime(stripped, utc=True, errors="coerce", format="ISO8601").dt.as_unit("us")
    elif kind == "numeric":
        parsed = pd.to_numeric(stripped, errors="coerce")
        parsed = parsed.where(parsed.abs() < 1e15)
    elif kind == "integer":
        number = pd.to_numeric(stripped, errors="coerce")
        number = number.where((number % 1 == 0) & (number.abs() < 2**62))
        parsed = number.astype("Int64")
    elif kind == "boolean":
        lowered = stripped.str.lower()
        parsed = lowered.isin(TRUE_VALUES).where(lowered.isin(TRUE_VALUES | FALSE_VALUES)).astype("boolean")
    else:
        raise ValueError(f"unknown landing type {kind!r}")
    missing = parsed.isna().to_numpy()
    failed = pc.and_(pa.array(missing), pc.is_valid(values))
    if kind == "timestamp":  # as text in UTC: Arrow's CSV writer is slow with a time zone
        return pc.binary_join_element_wise(pa.array(parsed).cast(pa.timestamp("us")).cast(pa.string()), "Z", ""), failed
    if kind == "numeric":  # as numpy writes the float, as pandas' to_csv did: 22.0 stays 22.0 in Postgres
        return pa.array(parsed.to_numpy().astype(str), mask=missing), failed
    return pa.array(parsed), failed


def _copy_rows(cur, spec: landing.LandingFile, good: pa.Table, **constants) -> None:
    """Write the rows, and a column per constant, with ``COPY``.

    Arrow's CSV writer quotes every string and leaves a null empty: ``COPY`` reads the empty string and NULL apart.
    """
    if not good.num_rows:
        return
    for name, value in constants.items():
        good = good.append_column(name, pa.repeat(value, good.num_rows))
    buffer = pa.BufferOutputStream()
    pacsv.write_csv(good, buffer, pacsv.WriteOptions(include_header=False))
    cur.copy_expert(
        sql.SQL("copy {} ({}) from stdin with (format csv)")
        .format(sql.Identifier("raw", spec.name), sql.SQL(", ").join(map(sql.Identifier, good.column_names)))
        .as_string(cur),
        pa.BufferReader(buffer.getvalue()),
    )


def _copy_rejects(cur, result: FileResult, rejected: pd.DataFrame, batch_id: str) -> None:
    """Write quarantined rows to ``quality.rejected_rows`` with ``COPY`` and count them in ``result``."""
    result.rows_quarantined += len(rejected)
    rejected = rejected.assign(batch_id=batch_id, table_name=result.table_name, source_file=result.source_file)
    names = ["batch_id", "table_name", "source_file", "line_number", "reason", "raw_record"]
    rejected["line_number"] = rejected["line_number"].astype("Int64")
    rejected["raw_record"] = rejected["raw_record"].str.replace("\x00", "\\x00", regex=False)  # Postgres has no NUL
    buffer = io.StringIO()
    rejected[names].to_csv(buffer, index=False, header=False)
    buffer.seek(0)
    statement = sql.SQL("copy quality.rejected_rows ({}) from stdin with (format csv)").format(
        sql.SQL(", ").join(map(sql.Identifier, names))
    )
    cur.copy_expert(statement.as_string(cur), buffer)


def _write_audit(cur, result: FileResult, batch_id: str) -> dict:
    row = {
        "batch_id": batch_id,
        "table_name": result.table_name,
        "source_file": result.source_file,
        "rows_read": result.rows_read,
        "rows_loaded": result.rows_loaded,
        "rows_rejected": result.rows_rejected,
        "rows_unchanged": result.rows_unchanged,
        "ignored_columns": ",".join(result.ignored_columns) or None,
        "file_sha256": result.sha256,
    }
    cur.execute(
        "insert into quality.load_audit (batch_id, table_name, source_file, rows_read, rows_loaded, rows_rejected,"
        " rows_unchanged, ignored_columns, file_sha256) values (%(batch_id)s, %(table_name)s, %(source_file)s,"
        " %(rows_read)s, %(rows_loaded)s, %(rows_rejected)s, %(rows_unchanged)s, %(ignored_columns)s,"
        " %(file_sha256)s)",
        row,
    )
    return row
