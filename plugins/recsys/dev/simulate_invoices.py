"""An invoice-shaped shop: what a wholesale/retail invoice export looks like, for tests and ``bench-scale``.

``recsys simulate --shape invoices`` writes an export in the UCI Online Retail
layout (``InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice,
CustomerID, Country``; dates month/day/year) and imports it with
:func:`recsys.ingest.importers.import_online_retail`, so the landing directory has
exactly the shape a real invoice feed gives the platform: no sessions, no
platform, no categories (a one-category catalogue), no demographics but a
country, purchases only.

What is planted, and why it matters for the models:

* **Repeat buying.** Every customer has a small list of usual products and
  re-orders from it (:data:`USUAL_SHARE` of lines); the rest comes from a
  long-tailed (Zipf) catalogue popularity.
* **A few giant buyers.** :data:`GIANT_SHARE` of the customers are
  wholesalers: many invoices of up to :data:`MAX_LINES` lines, quantities in
  the thousands. Most others buy a handful of invoices of a few lines.
* **Dirt of real exports.** Identical lines inside one invoice, cancellations
  (``C`` invoices with negative quantities of an earlier invoice's lines),
  postage and fee lines (``POST``, ``M``), lines without a customer (guest
  checkouts), and a Christmas peak (November volume x :data:`PEAK`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.ingest.importers import import_online_retail

logger = logging.getLogger(__name__)

USUAL_SHARE = 0.7
GIANT_SHARE = 0.01
MAX_LINES = 500
PEAK = 2.5
COUNTRIES = ("United Kingdom", "Germany", "France", "EIRE", "Spain", "Netherlands", "Unspecified")
WORDS = ("WHITE", "RED", "HEART", "LANTERN", "MUG", "BAG", "CANDLE", "VINTAGE", "SET", "BOX", "GLASS", "TIN")


def simulate_invoices(
    out_dir: Path | str,
    customers: int = 4_000,
    products: int = 4_000,
    days: int = 365,
    seed: int = 0,
    end_date: date = date(2011, 12, 9),
) -> dict:
    """Write ``out_dir/source/online_retail.csv`` and import it into the landing directory ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Landing directory to write.
    customers, products : int
        Registered customers and catalogue products.
    days : int
        Length of the window, ending with ``end_date``.
    seed : int
        Seed of :func:`numpy.random.default_rng`; the same arguments write the same bytes.
    end_date : date
        Last day of the window.

    Returns
    -------
    dict
        The import report of :func:`recsys.ingest.importers.import_online_retail`, plus ``export_rows``.
    """
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    export = invoice_lines(rng, customers, products, days, end_date)
    with tempfile.TemporaryDirectory(dir=out_dir.parent if out_dir.parent.exists() else None) as scratch:
        path = Path(scratch) / "online_retail.csv"
        export.to_csv(path, index=False, lineterminator="\n")
        report = import_online_retail(path, out_dir)  # replaces out_dir whole: the export joins it afterwards
        (out_dir / "source").mkdir()
        shutil.move(path, out_dir / "source" / "online_retail.csv")
    report["export_rows"] = len(export)
    return report


def invoice_lines(rng: np.random.Generator, customers: int, products: int, days: int, end_date: date) -> pd.DataFrame:
    """The export's rows (see the module): one row per invoice line, cancellations and fee lines included."""
    giant = rng.random(customers) < GIANT_SHARE
    n_invoices = np.where(giant, rng.integers(10, 60, customers), rng.geometric(0.3, customers))
    invoice_customer = np.repeat(np.arange(customers), n_invoices)
    n = len(invoice_customer)
    start = end_date - timedelta(days=days - 1)
    calendar = pd.date_range(start, periods=days, freq="D")
    weight = np.where(calendar.month == 11, PEAK, 1.0) * np.where(calendar.day_of_week == 5, 0.0, 1.0)  # no Saturdays
    day = rng.choice(days, size=n, p=weight / weight.sum())
    at = calendar[day] + pd.to_timedelta(rng.integers(8 * 60, 18 * 60, n), unit="min")
    order = np.argsort(at.to_numpy(), kind="stable")
    invoice_customer, at = invoice_customer[order], at[order]
    lines = np.minimum(
        np.where(giant[invoice_customer], rng.integers(20, MAX_LINES + 1, n), rng.geometric(0.06, n)), MAX_LINES
    )

    rows = np.repeat(np.arange(n), lines)
    customer = invoice_customer[rows]
    usual = (customer[:, None] * 7919 + np.arange(20)[None, :]) % products  # 20 usual products per customer
    popularity = 1.0 / np.arange(1, products + 1) ** 1.1
    product = np.where(
        rng.random(len(rows)) < USUAL_SHARE,
        usual[np.arange(len(rows)), rng.integers(0, 20, len(rows))],
        rng.choice(products, size=len(rows), p=popularity / popularity.sum()),
    )
    quantity = np.where(giant[customer], rng.integers(100, 5_000, len(rows)), rng.geometric(0.3, len(rows)))
    guest = (rng.random(n) < 0.15)[rows]  # guest checkouts: whole invoices without a customer
    export = _export(rng, rows, customer, guest, product, quantity, at, products, customers)
    return pd.concat([export, _cancellations(rng, export), _fee_lines(rng, export)], ignore_index=True)


def _export(rng, rows, customer, guest, product, quantity, at, products, customers) -> pd.DataFrame:
    """Invoice lines in the export layout, with duplicated lines and guest checkouts."""
    codes = np.char.add(
        np.char.zfill((10_000 + np.arange(products)).astype(str), 5), np.where(np.arange(products) % 7 == 0, "B", "")
    )
    names = np.array([" ".join(rng.choice(WORDS, 3)) for _ in range(products)])  # a few thousand products
    prices = np.round(np.exp(rng.normal(1.0, 0.8, products)), 2)
    customer_ids = np.char.add((12_346 + np.arange(customers)).astype(str), ".0")
    country = np.asarray(COUNTRIES)[np.minimum(rng.geometric(0.6, customers) - 1, len(COUNTRIES) - 1)]
    frame = pd.DataFrame(
        {
            "InvoiceNo": (536_365 + rows).astype(str),
            "StockCode": codes[product],
            "Description": names[product],
            "Quantity": quantity,
            "InvoiceDate": at[rows].strftime("%-m/%-d/%Y %-H:%M"),
            "UnitPrice": prices[product],
            "CustomerID": np.where(guest, "", customer_ids[customer]),
            "Country": country[customer],
        }
    )
    repeated = frame.sample(frac=0.02, random_state=int(rng.integers(2**31)))  # the same line scanned twice
    return pd.concat([frame, repeated]).sort_index(kind="stable").reset_index(drop=True)


def _cancellations(rng: np.random.Generator, export: pd.DataFrame) -> pd.DataFrame:
    """About 2 % of the lines cancelled: a ``C`` invoice the same day with the negative quantity."""
    cancelled = export[(export["CustomerID"] != "") & (rng.random(len(export)) < 0.02)].copy()
    cancelled["InvoiceNo"] = "C" + cancelled["InvoiceNo"]
    cancelled["Quantity"] = -cancelled["Quantity"]
    return cancelled


def _fee_lines(rng: np.random.Generator, export: pd.DataFrame) -> pd.DataFrame:
    """Postage (``POST``) on a fifth of the invoices and a manual adjustment (``M``) on one in a hundred."""
    invoices = export.drop_duplicates("InvoiceNo")
    post = invoices[rng.random(len(invoices)) < 0.2].assign(StockCode="POST", Description="POSTAGE", Quantity=1)
    manual = invoices[rng.random(len(invoices)) < 0.01].assign(StockCode="M", Description="Manual", Quantity=1)
    return pd.concat([post.assign(UnitPrice=18.0), manual.assign(UnitPrice=2.5)])
