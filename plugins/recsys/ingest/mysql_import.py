"""Import a shop's MySQL/MariaDB OLTP database into the landing format (``recsys import mysql``).

The expected source schema is :data:`SOURCE_TABLES`: one entry per landing file, naming the source table and,
per landing column, the source column it comes from. ``users``, ``products``, ``orders``, ``order_items`` and
``events`` are required; ``reviews``, ``promotions``, ``promotion_redemptions``, and the social tables ``follows``
(follows, friends or shares, by its ``kind``; default ``follow``) and ``referrals`` are read when they exist.
A missing required table or required column is an error naming it, raised before anything is written; a
missing optional table is skipped and a missing optional column is written empty, both listed in the report.

Every table is streamed with a server-side cursor (``pymysql.cursors.SSCursor``) in chunks of
``chunk_rows`` rows, ordered by its key, and written to its CSV as it arrives: no table is held in memory.
All tables are read in one read-only transaction with a consistent snapshot (InnoDB), so an order placed
during the extraction is in both ``orders`` and ``order_items`` or in neither.

Values
------
* The session runs with ``time_zone = '+00:00'``, so ``TIMESTAMP`` columns arrive in UTC; ``DATETIME``
  columns carry no zone and are read as UTC (the landing format's rule). Timestamps are written as ISO 8601
  UTC with ``Z``, to the second. A zero date (``0000-00-00``) is missing.
* Text is trimmed; an empty text is missing. Decimals are written exactly as stored (``12.50``), booleans
  (``TINYINT(1)``) as ``true``/``false``.
* ``events.type`` is lower-cased and mapped with :data:`recsys.ingest.importers.EVENT_TYPE_ALIASES`
  (``add_to_cart`` -> ``cart``, ...); ``orders.status`` with :data:`ORDER_STATUS_ALIASES` (``paid``,
  ``shipped``, ``delivered`` -> ``completed``; ``canceled`` -> ``cancelled``; ``refunded`` -> ``returned``);
  any other status passes on lower-cased for the raw quality gate to judge.
* ``order_items`` rows of the same product in the same order become one order line: quantities and discounts
  summed, ``unit_price`` the quantity-weighted mean (rounded to 4 decimals).

Rejected rows
-------------
A source row is not written when, in this order: a required value is missing (``missing_<landing column>``),
a used value holds a NUL character (``nul_character``) or is longer than
:data:`recsys.ingest.landing.MAX_VALUE_CHARS` (``value_too_long``), an event type is unknown
(``unknown_event_type``), an order line's quantity is not positive (``invalid_quantity``), or a social edge has
an unknown kind (``unknown_kind``), the same user at both ends (``self_edge``) or is a share without a product
(``missing_item_id``). Per table the
report has ``rows_read == rows_used + rows_rejected``, the reasons with counts and the keys of the first few
rejected rows; the totals are summed over the tables.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from urllib.parse import unquote, urlsplit

from recsys.ingest import landing
from recsys.ingest.importers import EVENT_TYPE_ALIASES

logger = logging.getLogger(__name__)

#: rows fetched from the server per round trip
CHUNK_ROWS = 10_000
_REPORT_EXAMPLES = 5
_SCHEMES = ("mysql", "mariadb", "mysql+pymysql")

#: order status spellings of shop systems, mapped to the landing statuses
ORDER_STATUS_ALIASES = {
    "completed": "completed",
    "complete": "completed",
    "paid": "completed",
    "shipped": "completed",
    "delivered": "completed",
    "fulfilled": "completed",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "returned": "returned",
    "refunded": "returned",
}


@dataclass(frozen=True)
class SourceColumn:
    landing: str  # the landing column written
    source: str  # the source column read
    required: bool = False  # the source table must have this column
    default: str = ""  # written when the value is missing (or the optional column is)


@dataclass(frozen=True)
class SourceTable:
    landing: str  # the landing file written
    table: str  # the source table read
    required: bool
    order_by: tuple[str, ...]  # the key: streaming order, and what identifies a rejected row in the report
    columns: tuple[SourceColumn, ...]


S = SourceColumn

#: the expected source schema, mapped to the landing format (the table in docs/data/importers.md is generated from it)
SOURCE_TABLES: tuple[SourceTable, ...] = (
    SourceTable(
        "users",
        "users",
        True,
        ("id",),
        (
            S("user_id", "id", True),
            S("signup_at", "created_at", True),
            S("birth_year", "birth_year"),
            S("gender", "gender"),
            S("region", "region"),
            S("platform", "platform"),
            S("signup_channel", "signup_channel"),
            S("email", "email"),
            S("phone", "phone"),
            S("is_personalization_allowed", "allow_personalization"),
        ),
    ),
    SourceTable(
        "items",
        "products",
        True,
        ("id",),
        (
            S("item_id", "id", True),
            S("name", "name", True),
            S("category_path", "category_path"),
            S("brand", "brand"),
            S("price", "price", True),
            S("stock_quantity", "stock"),
            S("created_at", "created_at"),
            S("description", "description"),
        ),
    ),
    SourceTable(
        "orders",
        "orders",
        True,
        ("id",),
        (
            S("order_id", "id", True),
            S("user_id", "user_id", True),
            S("ordered_at", "created_at", True),
            S("status", "status", True),
            S("platform", "platform"),
            S("promotion_id", "promotion_id"),
        ),
    ),
    SourceTable(
        "order_lines",
        "order_items",
        True,
        ("order_id", "product_id", "line_no"),
        (
            S("order_id", "order_id", True),
            S("item_id", "product_id", True),
            S("quantity", "quantity", True),
            S("unit_price", "unit_price", True),
            S("discount_amount", "discount"),
        ),
    ),
    SourceTable(
        "events",
        "events",
        True,
        ("id",),
        (
            S("event_id", "id", True),
            S("user_id", "user_id", True),
            S("item_id", "product_id", True),
            S("event_type", "type", True),
            S("event_at", "created_at", True),
            S("session_id", "session_id"),
            S("platform", "platform"),
            S("query", "query"),
            S("quantity", "quantity"),
            S("price", "price"),
        ),
    ),
    SourceTable(
        "reviews",
        "reviews",
        False,
        ("id",),
        (
            S("review_id", "id", True),
            S("user_id", "user_id", True),
            S("item_id", "product_id", True),
            S("rating", "rating", True),
            S("reviewed_at", "created_at", True),
            S("review_text", "body"),
        ),
    ),
    SourceTable(
        "promotions",
        "promotions",
        False,
        ("id",),
        (
            S("promotion_id", "id", True),
            S("name", "name"),
            S("promotion_type", "type"),
            S("discount_value", "discount_value"),
            S("category", "category"),
            S("starts_at", "starts_at", True),
            S("ends_at", "ends_at", True),
        ),
    ),
    SourceTable(
        "redemptions",
        "promotion_redemptions",
        False,
        ("id",),
        (
            S("promotion_id", "promotion_id", True),
            S("user_id", "user_id", True),
            S("order_id", "order_id"),
            S("redeemed_at", "redeemed_at", True),
        ),
    ),
    # social data: both tables write social_edges.csv (one after the other)
    SourceTable(
        "social_edges",
        "follows",
        False,
        ("follower_id", "followee_id"),
        (
            S("from_user_id", "follower_id", True),
            S("to_user_id", "followee_id", True),
            S("kind", "kind", default="follow"),
            S("created_at", "created_at", True),
            S("item_id", "product_id"),
        ),
    ),
    SourceTable(
        "social_edges",
        "referrals",
        False,
        ("referred_id",),
        (
            S("from_user_id", "referrer_id", True),
            S("to_user_id", "referred_id", True),
            S("kind", "kind", default="referral"),
            S("created_at", "created_at", True),
        ),
    ),
)


@dataclass(frozen=True)
class MySQLTarget:
    """Where to connect: parsed from the URL; ``password`` never appears in ``redacted``."""

    host: str
    port: int
    user: str
    password: str
    database: str

    @property
    def redacted(self) -> str:
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"


def parse_url(url: str) -> MySQLTarget:
    """Parse ``mysql://user[:password]@host[:port]/database``; the password, if absent, from ``MYSQL_PASSWORD``.

    Raises
    ------
    ValueError
        If the URL is not a MySQL URL or names no database (the message never contains the password).
    """
    parts = urlsplit(url)
    database = unquote(parts.path.lstrip("/"))
    if parts.scheme not in _SCHEMES or not parts.hostname or not database or "/" in database:
        shown = f"{parts.scheme}://{parts.hostname or ''}{parts.path}"
        raise ValueError(
            f"{shown}: not a MySQL URL; write mysql://user[:password]@host[:port]/database (the password may come"
            " from the environment variable MYSQL_PASSWORD instead)"
        )
    password = unquote(parts.password) if parts.password is not None else os.environ.get("MYSQL_PASSWORD", "")
    return MySQLTarget(
        host=parts.hostname,
        port=parts.port or 3306,
        user=unquote(parts.username or "root"),
        password=password,
        database=database,
    )


def import_mysql(url: str, out_dir: Path | str, chunk_rows: int = CHUNK_ROWS) -> dict:
    """Extract a shop's MySQL/MariaDB database (schema: :data:`SOURCE_TABLES`) into a landing directory.

    Parameters
    ----------
    url : str
        ``mysql://user[:password]@host[:port]/database``; without a password in the URL, ``MYSQL_PASSWORD``
        (else none) is used. Only the URL without the password is logged or written.
    out_dir : path
        Landing directory to write: missing, empty or an earlier import's output. It is replaced whole when
        the extraction succeeds (written into a temporary sibling first), so it holds this extraction only,
        and a failed extraction leaves it as it was.
    chunk_rows : int
        Rows fetched per round trip from the server-side cursor.

    Returns
    -------
    dict
        The import report, also written to ``import_report.json``: ``rows_read``, ``rows_used``,
        ``rows_rejected`` (summed over the tables), ``tables`` (the same per landing file, with
        ``source_table``, ``rejected_by_reason``, ``rejected_examples`` and ``missing_optional_columns``),
        ``skipped_tables`` and ``files`` (rows written per landing file).

    Raises
    ------
    RuntimeError
        If the server cannot be reached or refuses the login (the message names the URL without password).
    ValueError
        If the URL is not a MySQL URL, or a required table or column is missing (named in the message).
    """
    import pymysql
    import pymysql.cursors

    target = parse_url(url)
    try:
        conn = pymysql.connect(
            host=target.host,
            port=target.port,
            user=target.user,
            password=target.password,
            database=target.database,
            charset="utf8mb4",
            init_command="SET time_zone = '+00:00'",
        )
    except pymysql.err.MySQLError as error:
        raise RuntimeError(f"{target.redacted}: cannot connect ({error.args[-1]})") from error
    try:
        present = _source_columns(conn, target.database)
        plan, skipped = _plan(present, target)
        with landing.output_directory(out_dir) as partial:  # a failed extraction leaves out_dir as it was
            with conn.cursor() as cursor:  # one snapshot for every table (InnoDB): orders and their items agree
                cursor.execute("start transaction with consistent snapshot, read only")
            tables, files = {}, Counter()
            for spec, missing in plan:  # a second source table of a landing file appends to it, reported apart
                key = spec.landing if spec.landing not in tables else f"{spec.landing}.{spec.table}"
                with conn.cursor(pymysql.cursors.SSCursor) as cursor:
                    tables[key] = _extract(cursor, spec, missing, partial, chunk_rows, spec.landing in files)
                files[spec.landing] += tables[key].pop("rows_written")
            report = {
                "importer": "mysql",
                "source": target.redacted,
                "rows_read": sum(table["rows_read"] for table in tables.values()),
                "rows_used": sum(table["rows_used"] for table in tables.values()),
                "rows_rejected": sum(table["rows_rejected"] for table in tables.values()),
                "tables": tables,
                "skipped_tables": [spec.table for spec in skipped],
                "files": dict(files),
            }
            (partial / "import_report.json").write_text(json.dumps(report, indent=2) + "\n")
            landing.write_manifest(
                partial, rows=report["files"], generator="recsys import_mysql", source=target.redacted
            )
    finally:
        conn.close()
    logger.info(
        "imported %s: %d rows read, %d used, %d rejected; skipped tables %s",
        target.redacted,
        report["rows_read"],
        report["rows_used"],
        report["rows_rejected"],
        report["skipped_tables"],
    )
    return report


def _source_columns(conn, database: str) -> dict[str, set[str]]:
    """The tables of the database and their columns (names lower-cased)."""
    with conn.cursor() as cursor:
        cursor.execute(
            "select table_name, column_name from information_schema.columns where table_schema = %s", (database,)
        )
        present: dict[str, set[str]] = {}
        for table, column in cursor.fetchall():
            present.setdefault(table.lower(), set()).add(column.lower())
    return present


def _plan(present: dict[str, set[str]], target: MySQLTarget) -> tuple[list, list[SourceTable]]:
    """Which tables to read (with their missing optional columns) and which optional ones to skip.

    Raises
    ------
    ValueError
        Naming every missing required table and column.
    """
    plan, skipped, problems = [], [], []
    for spec in SOURCE_TABLES:
        if spec.table not in present:
            if spec.required:
                problems.append(f"required table `{spec.table}` is missing")
            else:
                skipped.append(spec)
                logger.info("optional table `%s` not found: %s not written", spec.table, spec.landing)
            continue
        columns = present[spec.table]
        needed = [column.source for column in spec.columns if column.required] + list(spec.order_by)
        absent = sorted({name for name in needed if name not in columns})
        problems += [f"required column `{spec.table}.{name}` is missing" for name in absent]
        missing = [column.source for column in spec.columns if not column.required and column.source not in columns]
        if missing:
            logger.info("table `%s` has no column(s) %s: written empty", spec.table, missing)
        plan.append((spec, missing))
    if problems:
        raise ValueError(
            f"{target.redacted}: {'; '.join(problems)}. The expected source schema is in docs/data/importers.md"
            " ('recsys import mysql')"
        )
    return plan, skipped


def _extract(cursor, spec: SourceTable, missing: list[str], out_dir: Path, chunk_rows: int, append: bool) -> dict:
    """Stream one source table into its landing CSV (after the rows already there with ``append``); its counts."""
    read_columns = [column for column in spec.columns if column.source not in missing]
    types = {column.name: column.type for column in landing.FILES[spec.landing].columns}
    is_time = [types[column.landing] == "timestamp" for column in read_columns]
    selected = [f"`{column.source}`" for column in read_columns]
    keys = [f"`{name}`" for name in spec.order_by]
    cursor.execute(f"select {', '.join(selected + keys)} from `{spec.table}` order by {', '.join(keys)}")
    file = landing.FILES[spec.landing]
    reasons: Counter = Counter()
    examples: dict[str, list] = {}
    read = written = 0
    merge = _LineMerger() if spec.landing == "order_lines" else None
    defaults = {column.landing: column.default for column in spec.columns if column.default}
    with (out_dir / file.filename).open("a" if append else "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=file.column_names, lineterminator="\n")
        if not append:
            writer.writeheader()
        while rows := cursor.fetchmany(chunk_rows):
            for row in rows:
                read += 1
                values = {
                    column.landing: _text(value, time)
                    for column, time, value in zip(read_columns, is_time, row[: len(read_columns)], strict=True)
                }
                values |= {name: default for name, default in defaults.items() if not values.get(name)}
                reason = _reject_reason(spec.landing, values)
                if reason:
                    reasons[reason] += 1
                    key = [part if isinstance(part, int | str) else _text(part) for part in row[len(read_columns) :]]
                    examples.setdefault(reason, [])
                    if len(examples[reason]) < _REPORT_EXAMPLES:
                        examples[reason].append(key[0] if len(key) == 1 else list(key))
                    continue
                if merge is None:
                    writer.writerow(values)
                    written += 1
                else:
                    for line in merge.add(values):
                        writer.writerow(line)
                        written += 1
        if merge is not None:
            for line in merge.flush():
                writer.writerow(line)
                written += 1
    rejected = sum(reasons.values())
    return {
        "source_table": spec.table,
        "rows_read": read,
        "rows_used": read - rejected,
        "rows_rejected": rejected,
        "rejected_by_reason": dict(sorted(reasons.items())),
        "rejected_examples": {reason: examples[reason] for reason in sorted(examples)},
        "missing_optional_columns": missing,
        "rows_written": written,
    }


def _text(value: object, is_timestamp: bool = False) -> str:
    """A source value as landing text ('' = missing; so is a zero date in a timestamp column)."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dt.date):
        return value.strftime("%Y-%m-%dT00:00:00Z")
    if isinstance(value, bytes):
        if len(value) == 1 and value in (b"\x00", b"\x01"):  # BIT(1)
            return "true" if value == b"\x01" else "false"
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        value = value.strip()
        return "" if is_timestamp and value.startswith("0000-00-00") else value
    return str(value)


def _reject_reason(name: str, values: dict[str, str]) -> str | None:
    """The first reason a mapped row cannot be written, after normalizing it in place; None if it can."""
    spec = landing.FILES[name]
    for column in spec.columns:
        if column.required and values.get(column.name, "") == "":
            return f"missing_{column.name}"
    if any("\x00" in value for value in values.values()):
        return "nul_character"
    if any(len(value) > landing.MAX_VALUE_CHARS for value in values.values()):
        return "value_too_long"
    if name == "users":
        values["is_personalization_allowed"] = _boolean(values.get("is_personalization_allowed", ""))
    elif name == "events":
        event_type = EVENT_TYPE_ALIASES.get(values["event_type"].lower())
        if event_type is None:
            return "unknown_event_type"
        values["event_type"] = event_type
        if event_type != "search" and values["item_id"] == "":
            return "missing_item_id"
    elif name == "orders":
        status = values["status"].lower()
        values["status"] = ORDER_STATUS_ALIASES.get(status, status)
    elif name == "order_lines" and not (values["quantity"].isdigit() and int(values["quantity"]) > 0):
        return "invalid_quantity"
    elif name == "social_edges":
        return _edge_reason(values)
    return None


def _edge_reason(values: dict[str, str]) -> str | None:
    """Why a social edge cannot be written (its kind lower-cased in place); None if it can."""
    values["kind"] = values["kind"].lower()
    if values["kind"] not in landing.SOCIAL_EDGE_KINDS:
        return "unknown_kind"
    if values["from_user_id"] == values["to_user_id"]:
        return "self_edge"
    if values["kind"] == "share" and not values.get("item_id"):
        return "missing_item_id"
    return None


def _boolean(value: str) -> str:
    """A MySQL boolean (``TINYINT(1)``, ``BIT(1)`` or text) as ``true``/``false``; empty stays empty."""
    if value == "":
        return ""
    return "false" if value.lower() in ("0", "false", "f", "no", "n") else "true"


class _LineMerger:
    """Merges consecutive order-item rows of the same (order, product) into one landing order line."""

    def __init__(self) -> None:
        self._key: tuple[str, str] | None = None
        self._rows: list[dict[str, str]] = []

    def add(self, values: dict[str, str]) -> list[dict[str, str]]:
        key = (values["order_id"], values["item_id"])
        done = self.flush() if key != self._key else []
        self._key = key
        self._rows.append(values)
        return done

    def flush(self) -> list[dict[str, str]]:
        rows, self._rows, self._key = self._rows, [], None
        if len(rows) <= 1:
            return rows
        quantity = sum(int(row["quantity"]) for row in rows)
        amount = sum(int(row["quantity"]) * Decimal(row["unit_price"]) for row in rows)
        discounts = [Decimal(row["discount_amount"]) for row in rows if row["discount_amount"] != ""]
        unit_price = (amount / quantity).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP).normalize()
        return [
            {
                **rows[0],
                "quantity": str(quantity),
                "unit_price": f"{unit_price:f}",
                "discount_amount": str(sum(discounts)) if discounts else "",
            }
        ]


def source_schema_markdown() -> str:
    """The expected source schema as a Markdown table, for docs/data/importers.md."""
    lines = ["| source table | column | landing column | required |", "|---|---|---|---|"]
    for spec in SOURCE_TABLES:
        table = f"`{spec.table}`" + ("" if spec.required else " (optional table)")
        file = landing.FILES[spec.landing].filename
        for column in spec.columns:
            required = "yes" if column.required else ""
            lines.append(f"| {table} | `{column.source}` | `{file}`: `{column.landing}` | {required} |")
        for name in spec.order_by:
            if name not in {column.source for column in spec.columns}:
                lines.append(f"| {table} | `{name}` | (sort key only) | yes |")
    return "\n".join(lines) + "\n"
