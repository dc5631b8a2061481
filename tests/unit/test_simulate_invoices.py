"""The invoice-shaped shop: the shape of a real invoice export, through the real importer."""

from __future__ import annotations

import pandas as pd

from recsys.dev.simulate_invoices import MAX_LINES, simulate_invoices


def test_an_invoice_export_has_the_shape_of_real_feeds(tmp_path) -> None:
    report = simulate_invoices(tmp_path / "shop", customers=400, products=300, days=120, seed=3)
    shop = tmp_path / "shop"
    export = pd.read_csv(shop / "source" / "online_retail.csv", dtype=str, keep_default_na=False)
    events = pd.read_csv(shop / "events.csv", dtype={"user_id": str, "item_id": str}, keep_default_na=False)
    orders = pd.read_csv(shop / "orders.csv", dtype=str)
    items = pd.read_csv(shop / "items.csv", dtype=str, keep_default_na=False)

    # counts reconcile through the importer: every export row is used or rejected with a reason
    assert report["rows_read"] == report["export_rows"] == len(export)
    assert report["rows_used"] + report["rows_rejected"] == report["rows_read"]
    assert {"duplicate_row", "missing_customer_id", "non_product_stock_code"} <= set(report["rejected_by_reason"])
    # no sessions, no platform, no categories: a one-category catalogue of purchases only
    assert set(events.event_type) == {"purchase"}
    assert (events.session_id == "").all() and (events.platform == "").all()
    assert (items.category_path == "").all()
    # cancellations become cancelled orders
    assert (orders.status == "cancelled").any() and (orders.status == "completed").any()
    # wholesale: some lines in the thousands, no invoice over MAX_LINES lines (+ its duplicated lines)
    quantity = export.Quantity.astype(int)
    assert quantity.max() >= 1_000
    assert export.groupby("InvoiceNo").size().max() <= MAX_LINES * 1.1
    # a few giant buyers hold a large share of the lines
    per_user = events.groupby("user_id").size().sort_values(ascending=False)
    assert per_user.iloc[: max(len(per_user) // 100, 1)].sum() > 0.1 * len(events)
    # repeat buying: most bought (user, item) pairs were bought on two or more invoices
    days = events.assign(day=events.event_at.str[:10]).groupby(["user_id", "item_id"]).day.nunique()
    assert (days >= 2).mean() > 0.3


def test_the_same_seed_writes_the_same_bytes(tmp_path) -> None:
    for name in ("a", "b"):
        simulate_invoices(tmp_path / name, customers=50, products=40, days=30, seed=1)
    for file in ("source/online_retail.csv", "events.csv", "orders.csv", "order_lines.csv"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
