"""Importers: public interaction data sets into the landing format.

Each importer reads one CSV as text (UTF-8; a value that is not valid UTF-8 is read as
Windows-1252 and counted in the report's ``values_read_as_windows_1252``; a UTF-16 file is refused with
how to convert it: :mod:`recsys.ingest.parsing`), parses every column it
uses explicitly, and writes a landing directory (see :mod:`recsys.ingest.landing`): ``users.csv``,
``items.csv``, ``events.csv``, ``orders.csv``, ``order_lines.csv``, ``manifest.json`` and
``import_report.json``.

Memory
------
An importer streams its source (:mod:`recsys.ingest.sources`): a first pass reads the date column only, to
decide day/month against month/day on the whole file (and to fit the block size to the longest record:
:meth:`recsys.ingest.sources.SourceCsv.date_order`); the second reads the file block by block
(``block_size`` bytes), rejects and converts each block, and sets the events (by month) and the purchase rows
(by :data:`LINE_BUCKETS` buckets of orders) aside on disk in the temporary output folder. What stays in
memory is one block and, per distinct key, the aggregates of the users, items and orders (first seen, the
counts behind the most frequent value and the median price), plus 16 bytes per distinct source row for
``duplicate_row``. The landing files are then written one month of events and one bucket of order lines at a
time. The output does not depend on ``block_size``.

Rejected rows
-------------
A source row that cannot be represented in the landing format (no user, no item,
a timestamp that does not parse, ...) is **not written**: it is counted under one
reason (the first that applies, in the order the importer documents) and the
report lists the reasons, their counts and the first five line numbers (the header
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

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.ingest import landing, sources
from recsys.ingest.parsing import parse_times
from recsys.ingest.sources import Block, KeyCounts, Rejections, SeenRows, SourceCsv, Spill

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
#: buckets the order lines are set aside in (by a hash of the order): one is in memory at a time at the end
LINE_BUCKETS = 16
#: numbers at or above this are not plausible quantities or prices (and overflow the warehouse's types)
_MAX_NUMBER = 1e15


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
    block_size: int = sources.BLOCK_SIZE,
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
    block_size : int
        Bytes of the source read at a time (default :data:`recsys.ingest.sources.BLOCK_SIZE`); the output does not
        depend on it.

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
    source = SourceCsv(path, [column for column in columns if column is not None], block_size)
    order = source.date_order(time_col, date_format)
    items, categories, prices = (
        pd.Index([], dtype=str),
        KeyCounts("item_id", "category_path"),
        KeyCounts("item_id", "price"),
    )
    first_seen, orders = pd.Series(dtype="datetime64[ns, UTC]"), None
    with landing.output_directory(out_dir) as partial:
        run = _Run(partial)
        for block in source.blocks(run.rejections):
            rows = _interaction_rows(block, run, columns, default_event_type, (order, date_format, str(path)))
            with_item = rows[rows["item_id"] != ""]
            items = items.union(pd.Index(with_item["item_id"].unique()))
            categories.add(with_item)
            prices.add(with_item)
            first_seen = _earliest(first_seen, rows)
            run.events.add(rows[_EVENT_COLUMNS], _month(rows["at"]))
            purchases = rows[(rows["event_type"] == "purchase") & rows["price"].notna()]
            purchases = purchases.assign(order_key=purchases["user_id"] + "\x1f" + _iso(purchases["at"]))
            orders = _stack(orders, purchases[["order_key", "user_id", "at"]]).drop_duplicates("order_key")
            run.lines.add(purchases[["order_key", "item_id", "quantity", "price"]], _bucket(purchases["user_id"]))
        orders = _or_empty(orders, ["order_key", "user_id", "at"]).sort_values(["at", "user_id"])
        orders["order_id"] = "O" + pd.Series(np.arange(1, len(orders) + 1), index=orders.index).astype(str).str.zfill(7)
        item_table = pd.DataFrame({"item_id": np.sort(items.to_numpy(dtype=object))})
        item_table["category_path"] = item_table["item_id"].map(categories.most_frequent())
        item_table["price"] = item_table["item_id"].map(prices.median().round(4))
        run.write("users", _first_seen_users(first_seen))
        run.write("items", item_table)
        run.write_events()
        order_ids = orders.set_index("order_key")["order_id"]
        run.write("orders", _orders(orders, "completed"))
        for lines in run.lines.groups():
            run.write("order_lines", _order_lines(lines.assign(order_id=lines["order_key"].map(order_ids))))
        run.finish(_report("interactions", path, source, run), generator="recsys import_interactions")
    return run.report


def _interaction_rows(block: Block, run: _Run, columns: list, default_event_type: str, dates: tuple) -> pd.DataFrame:
    """The used rows of one block of an interactions CSV; its rejected rows counted in ``run``."""
    user_col, item_col, time_col, event_type_col, quantity_col, price_col, category_col = columns
    source = block.rows
    user = source[user_col]
    item = source[item_col]
    order, date_format, name = dates
    at = parse_times(source[time_col], date_format, name, order=order)
    if event_type_col is None:
        event_type = pd.Series(default_event_type, index=source.index)
    else:
        event_type = source[event_type_col].str.lower().map(EVENT_TYPE_ALIASES)
    quantity, bad_quantity = _parse_optional_number(source, quantity_col)
    bad_quantity |= quantity.notna() & ((quantity <= 0) | (quantity % 1 != 0))
    price, bad_price = _parse_optional_number(source, price_col)
    bad_price |= price < 0
    used = run.judge(
        block,
        columns,
        {
            "missing_user": user == "",
            "missing_item": (item == "") & (event_type != "search"),
            "unparseable_timestamp": at.isna(),
            "unknown_event_type": event_type.isna(),
            "invalid_quantity": bad_quantity,
            "invalid_price": bad_price,
        },
    )
    quantity = quantity.where(event_type.isin(["cart", "purchase"]))
    quantity = quantity.mask(quantity.isna() & (event_type == "purchase"), 1)
    return pd.DataFrame(
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


def import_online_retail(
    path: Path | str, out_dir: Path | str, date_format: str | None = None, block_size: int = sources.BLOCK_SIZE
) -> dict:
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
    block_size : int
        Bytes of the source read at a time (default :data:`recsys.ingest.sources.BLOCK_SIZE`); the output does not
        depend on it.

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
    source = SourceCsv(path, list(ONLINE_RETAIL_COLUMNS), block_size)
    order = source.date_order("InvoiceDate", date_format)
    names, regions, prices = KeyCounts("item_id", "name"), KeyCounts("user_id", "region"), KeyCounts("item_id", "price")
    first_seen, orders = pd.Series(dtype="datetime64[ns, UTC]"), None
    codes, purchase_rows, cancellation_rows = np.array([], dtype=object), 0, 0
    with landing.output_directory(out_dir) as partial:
        run = _Run(partial)
        for block in source.blocks(run.rejections):
            rows, excluded = _retail_rows(block, run, (order, date_format, str(path)))
            codes = np.union1d(codes, excluded)
            names.add(rows)
            regions.add(rows)
            prices.add(rows)
            first_seen = _earliest(first_seen, rows)
            orders = _stack(orders, rows[_ORDER_STATE]).sort_values(["at", "line"], kind="stable")
            orders = orders.drop_duplicates("order_id")
            purchases = rows[~rows["is_cancellation"]]
            purchase_rows, cancellation_rows = (
                purchase_rows + len(purchases),
                cancellation_rows + len(rows) - len(purchases),
            )
            run.events.add(purchases.assign(event_type="purchase")[_EVENT_COLUMNS], _month(purchases["at"]))
            run.lines.add(rows[["order_id", "item_id", "quantity", "price"]], _bucket(rows["order_id"]))
        items = pd.DataFrame({"item_id": prices.median().index.to_numpy()})
        items["name"] = items["item_id"].map(names.most_frequent())
        items["price"] = items["item_id"].map(prices.median().round(4))
        users = _first_seen_users(first_seen)
        users["region"] = users["user_id"].map(regions.most_frequent())
        run.write("users", users)
        run.write("items", items)
        run.write_events()
        orders = _or_empty(orders, _ORDER_STATE).sort_values(["at", "order_id"])
        run.write("orders", _orders(orders, np.where(orders["is_cancellation"].astype(bool), "cancelled", "completed")))
        for lines in run.lines.groups():
            run.write("order_lines", _order_lines(lines))
        report = _report("online_retail", path, source, run)
        report["purchase_rows"] = purchase_rows
        report["cancellation_rows"] = cancellation_rows
        report["non_product_stock_codes"] = [str(code) for code in codes]
        run.finish(report, generator="recsys import_online_retail")
    return run.report


#: what an event is set aside with
_EVENT_COLUMNS = ["user_id", "item_id", "event_type", "at", "quantity", "price"]
#: what is kept per order while reading: its earliest row (ties: the first in the file)
_ORDER_STATE = ["order_id", "at", "line", "user_id", "is_cancellation"]


def _retail_rows(block: Block, run: _Run, dates: tuple) -> tuple[pd.DataFrame, np.ndarray]:
    """The used rows of one block of an Online Retail export, and the non-product stock codes it excluded."""
    source = block.rows
    invoice = source["InvoiceNo"].str.upper()
    code = source["StockCode"].str.upper()
    customer = source["CustomerID"].str.replace(r"^(\d+)\.0*$", r"\1", regex=True)
    order, date_format, name = dates
    at = parse_times(source["InvoiceDate"], date_format, name, order=order)
    quantity = _to_number(source["Quantity"])
    price = _to_number(source["UnitPrice"])
    is_cancellation = invoice.str.startswith("C")
    is_product = code.str.fullmatch(PRODUCT_STOCK_CODE)
    conditions = {
        "missing_customer_id": customer == "",
        "invalid_customer_id": ~customer.str.fullmatch(r"\d+"),
        "unparseable_invoice_date": at.isna(),
        "invalid_quantity": quantity.isna() | (quantity % 1 != 0),
        "invalid_unit_price": price.isna(),
        "non_product_stock_code": ~is_product,
        "zero_quantity": quantity == 0,
        "negative_quantity": (quantity < 0) & ~is_cancellation,
        "non_positive_unit_price": price <= 0,
    }
    used = run.judge(block, ONLINE_RETAIL_COLUMNS, conditions)
    excluded = code[run.last_reason == "non_product_stock_code"].unique()
    rows = pd.DataFrame(
        {
            "order_id": invoice,
            "user_id": customer,
            "item_id": code,
            "name": source["Description"],
            "region": source["Country"].replace("Unspecified", ""),
            "at": at,
            "line": block.line,
            "quantity": quantity.abs(),
            "price": price,
            "is_cancellation": is_cancellation,
        }
    )[used]
    return rows, np.asarray(excluded, dtype=object)


class _Run:
    """One import being written: the rejections, the rows seen, the spills and the landing files' rows."""

    def __init__(self, partial: Path) -> None:
        self.partial = partial
        self.rejections = Rejections()
        self.seen = SeenRows()
        self.events = Spill(partial / ".spill" / "events")
        self.lines = Spill(partial / ".spill" / "order_lines")
        self.files = {name: 0 for name in ("users", "items", "events", "orders", "order_lines")}
        self.rows_used = 0
        self.last_reason = pd.Series(dtype=object)
        self.report: dict = {}
        for name in self.files:
            self.write(name, pd.DataFrame())

    def judge(self, block: Block, columns, conditions: dict[str, pd.Series]) -> pd.Series:
        """Which rows of ``block`` are used: no reason of the module's, nor of ``conditions``, applies."""
        used_columns = block.rows[list(dict.fromkeys(column for column in columns if column is not None))]
        reason = _first_reason(
            {
                "unclosed_quote": block.truncated,
                "nul_character": used_columns.apply(lambda column: column.str.contains("\x00", regex=False)).any(
                    axis=1
                ),
                "value_too_long": used_columns.apply(lambda column: column.str.len() > landing.MAX_VALUE_CHARS).any(
                    axis=1
                ),
                **conditions,
                "duplicate_row": self.seen.duplicated(block.rows),
            },
            block.rows.index,
        )
        self.rejections.add(reason, block.line)
        self.last_reason = reason
        self.rows_used += int(reason.isna().sum())
        return reason.isna()

    def write(self, name: str, frame: pd.DataFrame) -> None:
        """Append ``frame`` to the landing file ``name`` (the header with the first, empty, frame)."""
        spec = landing.FILES[name]
        path = self.partial / spec.filename
        frame.reindex(columns=spec.column_names, fill_value="").to_csv(
            path, mode="a", header=not path.exists(), index=False, lineterminator="\n"
        )
        self.files[name] += len(frame)

    def write_events(self) -> None:
        """``events.csv``, one month at a time, in time order (ties: in the order of the source)."""
        for month in self.events.groups():
            self.write("events", _events(month))

    def finish(self, report: dict, generator: str) -> None:
        """Write the report and, last, the manifest with the rows per file."""
        shutil.rmtree(self.partial / ".spill")
        self.report = report
        (self.partial / "import_report.json").write_text(json.dumps(report, indent=2) + "\n")
        landing.write_manifest(self.partial, rows=dict(self.files), generator=generator, source=report["source"])


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


def _first_reason(conditions: dict[str, pd.Series], index: pd.Index) -> pd.Series:
    """The first condition that is true per row (in dict order), NaN where none is."""
    names = list(conditions)
    matrix = np.column_stack([condition.fillna(False).to_numpy(dtype=bool) for condition in conditions.values()])
    first = matrix.argmax(axis=1)
    return pd.Series(np.array(names, dtype=object)[first], index=index).where(matrix.any(axis=1))


def _earliest(first_seen: pd.Series, rows: pd.DataFrame) -> pd.Series:
    """Each user's earliest time so far: ``first_seen`` and the block's ``rows``."""
    block = rows.groupby("user_id")["at"].min()
    return block if first_seen.empty else pd.concat([first_seen, block]).groupby(level=0).min()


def _stack(state: pd.DataFrame | None, block: pd.DataFrame) -> pd.DataFrame:
    """The rows kept so far, then the block's."""
    return block if state is None else pd.concat([state, block], ignore_index=True)


def _or_empty(state: pd.DataFrame | None, columns: list[str]) -> pd.DataFrame:
    """The rows kept, or none (a file without rows)."""
    if state is not None:
        return state
    types = {"at": "datetime64[ns, UTC]", "line": "int64", "is_cancellation": bool}
    return pd.DataFrame({column: pd.Series(dtype=types.get(column, str)) for column in columns})


def _month(at: pd.Series) -> pd.Series:
    return at.dt.year * 12 + at.dt.month


def _bucket(keys: pd.Series) -> pd.Series:
    """One of :data:`LINE_BUCKETS` buckets per key (a stable hash: the same on every run)."""
    return pd.Series(pd.util.hash_array(keys.to_numpy(dtype=object)) % LINE_BUCKETS, index=keys.index)


def _first_seen_users(first_seen: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"user_id": first_seen.index.to_numpy(), "signup_at": _iso(first_seen).to_numpy()})


def _orders(orders: pd.DataFrame, status) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "order_id": orders["order_id"],
            "user_id": orders["user_id"],
            "ordered_at": _iso(orders["at"]),
            "status": status,
        }
    )


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


def _report(importer: str, path: Path | str, source: SourceCsv, run: _Run) -> dict:
    report = {
        "importer": importer,
        "source": str(path),
        "rows_read": source.rows_read,
        "rows_used": run.rows_used,
        "rows_rejected": run.rejections.total,
        "rejected_by_reason": run.rejections.by_reason(),
        "rejected_examples": run.rejections.first_lines(),
        "values_read_as_windows_1252": source.legacy_values,
        "files": dict(run.files),
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
