"""Frames in and out of the warehouse: one connection helper, one reader, one writer, both over ``COPY``.

Every module that moves a table between Postgres and pandas uses these, so there is one NULL rule:
a SQL NULL is a missing value (``NaN``/``None``) in the frame, and a missing value is a NULL in the table.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pandas as pd
import psycopg2
import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg2 import sql


@contextmanager
def connection(conn: Any) -> Iterator[Any]:
    """Yield a connection: the one given, or a new one for a DSN string (closed afterwards)."""
    if isinstance(conn, str):
        owned = psycopg2.connect(conn)
        try:
            yield owned
        finally:
            owned.close()
    else:
        yield conn


def read_frame(conn: Any, query: str | sql.Composable, dtype: type | Mapping[str, Any] = str) -> pd.DataFrame:
    """Run ``query`` through ``COPY ... TO STDOUT`` (CSV) into a frame.

    Parameters
    ----------
    conn : psycopg2 connection
    query : str or psycopg2.sql.Composable
        A ``select``.
    dtype : type or mapping, default str
        Column types for :func:`pandas.read_csv`: by default every column is text; with a mapping, the columns
        it names get that type and the others are parsed (numbers as numbers, ``t``/``f`` as booleans).

    Returns
    -------
    DataFrame
        NULL is a missing value, an empty string stays an empty string.
    """
    buffer = io.BytesIO()
    with conn.cursor() as cursor:
        text = query.as_string(cursor) if isinstance(query, sql.Composable) else query
        cursor.copy_expert(f"copy ({text}) to stdout with (format csv, header true, null '\\N')", buffer)
    buffer.seek(0)
    return pd.read_csv(
        buffer, dtype=dtype, keep_default_na=False, na_values=["\\N"], true_values=["t"], false_values=["f"]
    )


def table_exists(conn: Any, name: str) -> bool:
    """Whether the ``schema.table`` (or view) ``name`` exists."""
    with conn.cursor() as cursor:
        cursor.execute("select to_regclass(%s) is not null", (name,))
        return bool(cursor.fetchone()[0])


@dataclass(frozen=True)
class CsvRows:
    """A frame as Postgres CSV: made where the frame is (a worker process), copied where the connection is.

    The CSV is written by Arrow's C++ writer (strings quoted, nulls as unquoted empty fields: exactly
    Postgres' CSV convention).
    """

    columns: tuple[str, ...]
    data: bytes
    rows: int

    @classmethod
    def of(cls, frame: pd.DataFrame) -> CsvRows:
        sink = pa.BufferOutputStream()
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pa_csv.write_csv(table, sink, pa_csv.WriteOptions(include_header=False))
        return cls(tuple(frame.columns), sink.getvalue().to_pybytes(), len(frame))


def copy_csv(conn: Any, table: str, rows: CsvRows) -> int:
    """Append ``rows`` to ``table`` with ``COPY FROM STDIN`` (columns by name); return rows written."""
    if not rows.rows:
        return 0
    schema, name = table.split(".")
    statement = sql.SQL("copy {} ({}) from stdin with (format csv)").format(
        sql.Identifier(schema, name), sql.SQL(", ").join(map(sql.Identifier, rows.columns))
    )
    with conn.cursor() as cursor:
        cursor.copy_expert(statement.as_string(cursor), io.BytesIO(rows.data))
    return rows.rows


def copy_frame(conn: Any, table: str, frame: pd.DataFrame) -> int:
    """Append a frame to ``table`` with ``COPY FROM STDIN`` (columns by name); return rows written."""
    return 0 if frame.empty else copy_csv(conn, table, CsvRows.of(frame))
