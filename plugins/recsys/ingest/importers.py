"""Importers: public interaction data sets into the landing format.

Each importer reads one CSV as text (UTF-8; a value that is not valid UTF-8 is read as
Windows-1252 and counted in the report's ``values_read_as_windows_1252``; a UTF-16 file is refused with
how to convert it: :mod:`recsys.ingest.parsing`), parses every column it
uses explicitly, and writes a landing directory (see :mod:`recsys.ingest.landing`): ``users.csv``,
``items.csv``, ``events.csv``, ``orders.csv``, ``order_lines.csv``, ``manifest.json`` and
``import_report.json``.

Rejected rows
-------------
A source row that cannot be represented in the landing format (no user, no item,
a timestamp that does not parse, ...) is **not written**: it is counted under one
reason (the first that applies, in the order the importer documents) and the
report lists the reasons, their counts and the first few line numbers (the header
is line 1; blank lines and line breaks inside quoted values do not count). Every
importer first rejects, in this order:

* ``wrong_field_count``: a line with more or fewer fields than the header;
* ``unclosed_quote``: a record that runs over several lines because a quote is not
  closed, or the last record of a file that ends inside a quoted field (truncated);
* ``nul_character``: a NUL character in a column the importer uses (Postgres cannot
  store it);
* ``value_too_long``: a value of a used column longer than
  :data:`recsys.ingest.landing.MAX_VALUE_CHARS` characters;

then by its own reasons, and last ``duplicate_row``: a row identical in every
column to an earlier one (a double delivery; staging would count the event once
while the order line summed it twice). The counts reconcile:
``rows_read == rows_used + rows_rejected`` and ``rows_rejected`` is the sum of
``rejected_by_reason``. The same dict is returned and written to
``import_report.json``.

Common rules
------------
* Values are trimmed; an empty value is missing.
* Timestamps are written as ISO 8601 UTC with ``Z``, to the second.
* ``users.signup_at`` is the user's first row (no source has a signup time).
* One order line per (order, item): rows of the same item in the same order are
  summed, the ``unit_price`` is the quantity-weighted mean. Every used purchase row
  is one ``purchase`` event, so an order line's quantity is the sum of the
  quantities of its purchase events.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from recsys.ingest import landing, load
from recsys.ingest.parsing import check_encoding, decode_legacy, parse_times

logger = logging.getLogger(__name__)

#: event type spellings of public data sets, mapped to landing event types
EVENT_TYPE_ALIASES = {
    "addtocart": "cart",
    "add_to_cart": "cart",
    "add-to-cart": "cart",
    "removefromcart": "remove_from_cart",
    "remove": "remove_from_cart",
    "transaction": "purchase",
    "order": "purchase",
    "buy": "purchase",
    "click": "view",
    "pageview": "view",
    "page_view": "view",
    **{event_type: event_type for event_type in landing.EVENT_TYPES},
}

ONLINE_RETAIL_COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)
#: a product StockCode is five digits, sometimes followed by a letter variant ("85123A");
#: everything else (POST, M, D, DOT, BANK CHARGES, C2, AMAZONFEE, PADS, S, CRUK, gift_0001_10, ...)
#: is postage, a fee, a manual adjustment or a voucher
PRODUCT_STOCK_CODE = r"^\d{5}[A-Z]*$"
_REPORT_EXAMPLES = 5
#: numbers at or above this are not plausible quantities or prices (and overflow the warehouse's types)
_MAX_NUMBER = 1e15


@dataclass
class _Source:
    """A source CSV as read: text rows, where each came from, and what could not be read as a row."""

    rows: pd.DataFrame  # every column as trimmed text, one row per record that has the header's fields
    line: pd.Series  # the line number of each row (header = 1)
    truncated: pd.Series  # True for a last row the file cuts off inside a quoted field
    malformed: pd.DataFrame  # records without the header's number of fields: line, reason
    legacy_values: int  # values that were not UTF-8 and were read as Windows-1252


def import_interactions(
    path: Path | str,
    out_dir: Path | str,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str = "timestamp",
    event_type_col: str | None = None,
    quantity_col: str | None = None,
    price_col: str | None = None,
    category_col: str | None = None,
    default_event_type: str = "purchase",
    date_format: str | None = None,
) -> dict:
    """Import a generic interactions CSV (one row per interaction) into a landing directory.

    Writes ``users.csv`` (signup_at = first seen), ``items.csv`` (``category_path``
    from the category column, the most frequent value per item; ``price`` the median
    price seen), ``events.csv`` (one event per used row) and, from purchase rows with
    a price, ``orders.csv`` (one completed order per user and timestamp) and
    ``order_lines.csv``.

    Timestamps are read by :func:`recsys.ingest.parsing.parse_times` (ISO 8601, compact dates, epochs by
    magnitude, day/month or month/day decided per file), or with ``date_format``. Event types are matched
    after trimming and lower-casing, with the spellings of :data:`EVENT_TYPE_ALIASES`
    (``addtocart``, ``transaction``, ...). Cart and purchase events carry the
    quantity (1 for a purchase without one).

    Rows are rejected with the first reason that applies, in this order: the
    reasons every importer checks first (see the module), ``missing_user``,
    ``missing_item`` (every type but search needs an item),
    ``unparseable_timestamp``, ``unknown_event_type``, ``invalid_quantity``
    (present but not a positive whole number below 10^15), ``invalid_price``
    (present but not a number >= 0 and below 10^15), ``duplicate_row``.

    Parameters
    ----------
    path : path
        The CSV file, with a header row.
    out_dir : path
        Landing directory to write: missing, empty or an earlier import's output, replaced whole once the
        import succeeded (:func:`recsys.ingest.landing.output_directory`).
    user_col, item_col, time_col : str
        Columns holding the user id, the item id and the timestamp.
    event_type_col : str, optional
        Column holding the event type; without it every row is ``default_event_type``.
    quantity_col, price_col, category_col : str, optional
        Columns holding the quantity, the unit price and the item's category
        (written as ``category_path``; use ``" > "`` between levels).
    default_event_type : str
        Event type of every row when ``event_type_col`` is not given.
    date_format : str, optional
        The timestamps' ``strftime`` format, when detection cannot tell (see above).

    Returns
    -------
    dict
        The import report: ``rows_read``, ``rows_used`` (each written as one event),
        ``rows_rejected``, ``rejected_by_reason``, ``rejected_examples`` (row numbers
        per reason) and ``files`` (rows written per landing file).

    Raises
    ------
    ValueError
        If a named column is not in the file, or ``default_event_type`` is not a
        landing event type.
    """
    if default_event_type not in landing.EVENT_TYPES:
        raise ValueError(f"default_event_type {default_event_type!r} is not one of {landing.EVENT_TYPES}")
    columns = [user_col, item_col, time_col, event_type_col, quantity_col, price_col, category_col]
    read = _read_csv(path, [column for column in columns if column is not None])
    source = read.rows

    user = source[user_col]
    item = source[item_col]
    at = parse_times(source[time_col], date_format, str(path))
    if event_type_col is None:
        event_type = pd.Series(default_event_type, index=source.index)
    else:
        event_type = source[event_type_col].str.lower().map(EVENT_TYPE_ALIASES)
    quantity, bad_quantity = _parse_optional_number(source, quantity_col)
    bad_quantity |= quantity.notna() & ((quantity <= 0) | (quantity % 1 != 0))
    price, bad_price = _parse_optional_number(source, price_col)
    bad_price |= price < 0

    reason = _first_reason(
        {
            **_read_reasons(read, columns),
            "missing_user": user == "",
            "missing_item": (item == "") & (event_type != "search"),
            "unparseable_timestamp": at.isna(),
            "unknown_event_type": event_type.isna(),
            "invalid_quantity": bad_quantity,
            "invalid_price": bad_price,
            "duplicate_row": source.duplicated(),
        }
    )
    used = reason.isna()
    quantity = quantity.where(event_type.isin(["cart", "purchase"]))
    quantity = quantity.mask(quantity.isna() & (event_type == "purchase"), 1)
    rows = pd.DataFrame(
        {
            "user_id": user,
            "item_id": item,
            "event_type": event_type,
            "at": at,
            "quantity": quantity,
            "price": price,
            "category_path": source[category_col] if category_col else "",
        }
    )[used]

    with_item = rows[rows["item_id"] != ""]
    items = pd.DataFrame({"item_id": np.sort(with_item["item_id"].unique())})
    items["category_path"] = items["item_id"].map(_most_frequent(with_item, "item_id", "category_path"))
    items["price"] = items["item_id"].map(with_item.groupby("item_id")["price"].median().round(4))

    purchases = rows[(rows["event_type"] == "purchase") & rows["price"].notna()]
    order_key = purchases["user_id"] + "\x1f" + _iso(purchases["at"])
    orders = (
        purchases.assign(order_key=order_key)
        .drop_duplicates("order_key")
        .sort_values(["at", "user_id"])[["order_key", "user_id", "at"]]
    )
    orders["order_id"] = "O" + pd.Series(np.arange(1, len(orders) + 1), index=orders.index).astype(str).str.zfill(7)
    lines = purchases.assign(order_id=order_key.map(orders.set_index("order_key")["order_id"]))

    tables = {
        "users": _first_seen_users(rows),
        "items": items,
        "events": _events(rows),
        "orders": pd.DataFrame(
            {
                "order_id": orders["order_id"],
                "user_id": orders["user_id"],
                "ordered_at": _iso(orders["at"]),
                "status": "completed",
            }
        ),
        "order_lines": _order_lines(lines),
    }
    report = _report("interactions", path, reason, tables, read)
    _write(out_dir, tables, report, generator="recsys import_interactions")
    return report


def import_online_retail(path: Path | str, out_dir: Path | str, date_format: str | None = None) -> dict:
    """Import the UCI Online Retail data set (CSV export) into a landing directory.

    The layout is ``InvoiceNo, StockCode, Description, Quantity, InvoiceDate,
    UnitPrice, CustomerID, Country`` with ``InvoiceDate`` as month/day/year
    (``12/1/2010 8:26``; ISO 8601 is accepted too), read as UTC. An invoice is an
    order: purchases (invoices not starting with ``C``) become completed orders,
    order lines and purchase events; cancellations (``C536379``) become cancelled
    orders with their lines (positive quantities) and no events. ``CustomerID``
    becomes ``user_id`` (``"17850"``, not ``"17850.0"``) with ``Country`` as region
    (``Unspecified`` left empty), ``StockCode`` (upper-cased) the ``item_id``, the
    most frequent ``Description`` its name and the median ``UnitPrice`` its price;
    ``category_path`` stays empty (the data set has no categories).

    Rows are rejected with the first reason that applies, in this order: the
    reasons every importer checks first (see the module),
    ``missing_customer_id`` (cannot be attributed to a user),
    ``invalid_customer_id`` (not a whole number such as ``17850`` or ``17850.0``),
    ``unparseable_invoice_date``, ``invalid_quantity`` (not a whole number below 10^15),
    ``invalid_unit_price`` (not a number below 10^15), ``non_product_stock_code`` (postage, fees,
    manual adjustments, vouchers: see :data:`PRODUCT_STOCK_CODE`),
    ``zero_quantity``, ``negative_quantity`` (on an invoice that is not a
    cancellation: stock adjustments), ``non_positive_unit_price``, ``duplicate_row``.

    Parameters
    ----------
    path : path
        The CSV file.
    date_format : str, optional
        ``InvoiceDate``'s ``strftime`` format, when detection cannot tell day/month from month/day.
    out_dir : path
        Landing directory to write: missing, empty or an earlier import's output, replaced whole once the
        import succeeded (:func:`recsys.ingest.landing.output_directory`).

    Returns
    -------
    dict
        The import report: ``rows_read``, ``rows_used`` (``purchase_rows`` +
        ``cancellation_rows``), ``rows_rejected``, ``rejected_by_reason``,
        ``rejected_examples``, ``non_product_stock_codes`` (the codes excluded) and
        ``files`` (rows written per landing file).

    Raises
    ------
    ValueError
        If a column of the layout is missing.
    """
    read = _read_csv(path, list(ONLINE_RETAIL_COLUMNS))
    source = read.rows
    invoice = source["InvoiceNo"].str.upper()
    code = source["StockCode"].str.upper()
    customer = source["CustomerID"].str.replace(r"^(\d+)\.0*$", r"\1", regex=True)
    at = parse_times(source["InvoiceDate"], date_format, str(path))
    quantity = _to_number(source["Quantity"])
    price = _to_number(source["UnitPrice"])
    is_cancellation = invoice.str.startswith("C")
    is_product = code.str.fullmatch(PRODUCT_STOCK_CODE)

    reason = _first_reason(
        {
            **_read_reasons(read, ONLINE_RETAIL_COLUMNS),
            "missing_customer_id": customer == "",
            "invalid_customer_id": ~customer.str.fullmatch(r"\d+"),
            "unparseable_invoice_date": at.isna(),
            "invalid_quantity": quantity.isna() | (quantity % 1 != 0),
            "invalid_unit_price": price.isna(),
            "non_product_stock_code": ~is_product,
            "zero_quantity": quantity == 0,
            "negative_quantity": (quantity < 0) & ~is_cancellation,
            "non_positive_unit_price": price <= 0,
            "duplicate_row": source.duplicated(),
        }
    )
    used = reason.isna()
    rows = pd.DataFrame(
        {
            "order_id": invoice,
            "user_id": customer,
            "item_id": code,
            "name": source["Description"],
            "region": source["Country"].replace("Unspecified", ""),
            "at": at,
            "quantity": quantity.abs(),
            "price": price,
            "is_cancellation": is_cancellation,
        }
    )[used]
    purchases = rows[~rows["is_cancellation"]]

    items = pd.DataFrame({"item_id": np.sort(rows["item_id"].unique())})
    items["name"] = items["item_id"].map(_most_frequent(rows, "item_id", "name"))
    items["price"] = items["item_id"].map(rows.groupby("item_id")["price"].median().round(4))
    users = _first_seen_users(rows)
    users["region"] = users["user_id"].map(_most_frequent(rows, "user_id", "region"))
    orders = rows.sort_values(["at", "order_id"]).drop_duplicates("order_id")

    tables = {
        "users": users,
        "items": items,
        "events": _events(purchases.assign(event_type="purchase")),
        "orders": pd.DataFrame(
            {
                "order_id": orders["order_id"],
                "user_id": orders["user_id"],
                "ordered_at": _iso(orders["at"]),
                "status": np.where(orders["is_cancellation"], "cancelled", "completed"),
            }
        ),
        "order_lines": _order_lines(rows),
    }
    report = _report("online_retail", path, reason, tables, read)
    report["purchase_rows"] = len(purchases)
    report["cancellation_rows"] = len(rows) - len(purchases)
    report["non_product_stock_codes"] = sorted(code[reason == "non_product_stock_code"].unique())
    _write(out_dir, tables, report, generator="recsys import_online_retail")
    return report


def _read_csv(path: Path | str, columns: list[str]) -> _Source:
    """Read every value as trimmed text; check that ``columns`` exist.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        If the file is empty, its header repeats or lacks a column, or it cannot be read as CSV; the message
        names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    check_encoding(path)
    with path.open("rb") as handle:
        first = handle.readline()
    names = [name.strip() for name in next(csv.reader([_decode(first).lstrip("\ufeff")]), [])]
    if not any(names):
        raise ValueError(f"{path}: the file is empty; it needs a header row naming the columns, then the data")
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ValueError(f"{path}: column(s) {duplicated} appear more than once in the header; rename them")
    missing = [column for column in columns if column not in names]
    if missing:
        raise ValueError(f"{path}: column(s) {missing} not found; the file has columns {names}")

    malformed: list[dict] = []

    def on_invalid_row(row) -> str:
        reason = "unclosed_quote" if "\n" in row.text else "wrong_field_count"
        malformed.append({"line": row.number, "reason": reason})
        return "skip"

    utf8 = load.is_utf8(path)
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=1, block_size=load.BLOCK_SIZE, use_threads=False
            ),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid_row),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() if utf8 else pa.binary() for name in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as error:
        raise ValueError(
            f"{path}: cannot be read as CSV ({error}); a record longer than {load.BLOCK_SIZE >> 20} MB (a huge value,"
            " or a quote that is never closed) causes this: fix the file and import it again"
        ) from error
    rows = table.to_pandas()
    truncated = pd.Series(False, index=rows.index)
    if len(rows):
        truncated.iloc[-1] = load.ends_inside_quotes(path, rows[names[-1]].iloc[-1])
    legacy = pd.DataFrame(False, index=rows.index, columns=rows.columns)
    if not utf8:
        utf8_text = rows.apply(lambda column: column.str.decode("utf-8", errors="replace"))
        legacy = utf8_text.apply(lambda column: column.str.encode("utf-8")).ne(rows)
        rows = utf8_text.mask(legacy, rows.apply(lambda column: column.map(decode_legacy)))
        count = int(legacy.to_numpy().sum())
        logger.warning("%s: %d value(s) are not UTF-8 and were read as Windows-1252", path, count)
    malformed = pd.DataFrame(malformed, columns=["line", "reason"])
    return _Source(
        rows=rows.apply(lambda column: column.str.strip()),
        line=pd.Series(load.line_numbers(malformed["line"].tolist(), 1, len(rows)), index=rows.index),
        truncated=truncated,
        malformed=malformed,
        legacy_values=int(legacy.to_numpy().sum()),
    )


def _decode(raw: bytes) -> str:
    """UTF-8, else Windows-1252."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return decode_legacy(raw)


def _read_reasons(read: _Source, columns) -> dict[str, pd.Series]:
    """The reasons every importer checks first, for the rows it read (see the module docstring)."""
    used = read.rows[list(dict.fromkeys(column for column in columns if column is not None))]
    return {
        "unclosed_quote": read.truncated,
        "nul_character": used.apply(lambda column: column.str.contains("\x00", regex=False)).any(axis=1),
        "value_too_long": used.apply(lambda column: column.str.len() > landing.MAX_VALUE_CHARS).any(axis=1),
    }


def _to_number(values: pd.Series) -> pd.Series:
    """Numbers, NaN where a value is not a finite number below :data:`_MAX_NUMBER` in size."""
    number = pd.to_numeric(values, errors="coerce")
    return number.where(number.abs() < _MAX_NUMBER)


def _parse_optional_number(source: pd.DataFrame, column: str | None) -> tuple[pd.Series, pd.Series]:
    """The numbers of ``column`` (NaN if empty) and where a value is present but not a number."""
    if column is None:
        return pd.Series(np.nan, index=source.index), pd.Series(False, index=source.index)
    number = _to_number(source[column])
    return number, number.isna() & (source[column] != "")


def _first_reason(conditions: dict[str, pd.Series]) -> pd.Series:
    """The first condition that is true per row (in dict order), NaN where none is."""
    names = list(conditions)
    matrix = np.column_stack([condition.fillna(False).to_numpy(dtype=bool) for condition in conditions.values()])
    first = matrix.argmax(axis=1)
    index = next(iter(conditions.values())).index
    return pd.Series(np.array(names, dtype=object)[first], index=index).where(matrix.any(axis=1))


def _most_frequent(rows: pd.DataFrame, key: str, column: str) -> pd.Series:
    """The most frequent non-empty ``column`` value per ``key`` (ties: alphabetical)."""
    present = rows[rows[column] != ""]
    counts = present.groupby([key, column]).size().rename("count").reset_index()
    best = counts.sort_values([key, "count", column], ascending=[True, False, True]).drop_duplicates(key)
    return best.set_index(key)[column]


def _first_seen_users(rows: pd.DataFrame) -> pd.DataFrame:
    first_seen = rows.groupby("user_id")["at"].min()
    return pd.DataFrame({"user_id": first_seen.index, "signup_at": _iso(first_seen).to_numpy()})


def _events(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows.sort_values("at", kind="stable")
    return pd.DataFrame(
        {
            "user_id": rows["user_id"],
            "item_id": rows["item_id"],
            "event_type": rows["event_type"],
            "event_at": _iso(rows["at"]),
            "quantity": rows["quantity"].astype("Int64"),
            "price": rows["price"].round(4),
        }
    )


def _order_lines(rows: pd.DataFrame) -> pd.DataFrame:
    totals = (
        rows.assign(amount=rows["quantity"] * rows["price"])
        .groupby(["order_id", "item_id"], as_index=False)[["quantity", "amount"]]
        .sum()
    )
    return pd.DataFrame(
        {
            "order_id": totals["order_id"],
            "item_id": totals["item_id"],
            "quantity": totals["quantity"].astype("Int64"),
            "unit_price": (totals["amount"] / totals["quantity"]).round(4),
        }
    )


def _iso(at: pd.Series) -> pd.Series:
    return at.dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _report(importer: str, path: Path | str, reason: pd.Series, tables: dict[str, pd.DataFrame], read: _Source) -> dict:
    rejected = pd.concat(
        [
            pd.DataFrame({"reason": reason.dropna(), "line": read.line[reason.notna()]}),
            read.malformed,
        ],
        ignore_index=True,
    ).sort_values("line", kind="stable")
    report = {
        "importer": importer,
        "source": str(path),
        "rows_read": len(reason) + len(read.malformed),
        "rows_used": int(reason.isna().sum()),
        "rows_rejected": len(rejected),
        "rejected_by_reason": {
            name: int(count) for name, count in rejected["reason"].value_counts().sort_index().items()
        },
        "rejected_examples": {
            name: lines.head(_REPORT_EXAMPLES).astype(int).tolist()
            for name, lines in rejected["line"].groupby(rejected["reason"])
        },
        "values_read_as_windows_1252": read.legacy_values,
        "files": {name: len(frame) for name, frame in tables.items()},
    }
    logger.info(
        "imported %s: %d rows read, %d used, %d rejected %s",
        path,
        report["rows_read"],
        report["rows_used"],
        report["rows_rejected"],
        report["rejected_by_reason"],
    )
    return report


def _write(out_dir: Path | str, tables: dict[str, pd.DataFrame], report: dict, generator: str) -> None:
    """Write the landing files, the report and, last, the manifest with the rows per file; swap them in whole."""
    with landing.output_directory(out_dir) as partial:
        for name, frame in tables.items():
            spec = landing.FILES[name]
            frame.reindex(columns=spec.column_names, fill_value="").to_csv(
                partial / spec.filename, index=False, lineterminator="\n"
            )
        (partial / "import_report.json").write_text(json.dumps(report, indent=2) + "\n")
        rows = {name: len(frame) for name, frame in tables.items()}
        landing.write_manifest(partial, rows=rows, generator=generator, source=report["source"])
