"""Importers on small hand-written fixtures with hand-computed answers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from recsys.ingest import landing
from recsys.ingest.importers import import_interactions, import_online_retail

FIXTURES = Path(__file__).parent.parent / "fixtures"
INTERACTION_COLUMNS = {
    "user_col": "visitor",
    "item_col": "product",
    "time_col": "ts",
    "event_type_col": "type",
    "quantity_col": "qty",
    "price_col": "amount",
    "category_col": "cat",
}


def read(directory: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(directory / f"{name}.csv", dtype=str, keep_default_na=False)


def order_totals(directory: Path) -> dict[str, float]:
    lines = read(directory, "order_lines")
    amount = lines["quantity"].astype(int) * lines["unit_price"].astype(float)
    return amount.groupby(lines["order_id"]).sum().round(2).to_dict()


def assert_landing_files(directory: Path, report: dict) -> None:
    for name, count in report["files"].items():
        frame = read(directory, name)
        assert list(frame.columns) == landing.FILES[name].column_names
        assert len(frame) == count
    manifest = landing.read_manifest(directory)
    assert manifest["format_version"] == landing.FORMAT_VERSION and manifest["rows"] == report["files"]
    assert json.loads((directory / "import_report.json").read_text()) == report


# --- UCI Online Retail -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def retail(tmp_path_factory):
    directory = tmp_path_factory.mktemp("online_retail")
    return directory, import_online_retail(FIXTURES / "online_retail_small.csv", directory)


def test_online_retail_report_reconciles_with_reasons(retail):
    directory, report = retail
    assert report["rows_read"] == 18
    assert report["rows_used"] == 11
    assert report["purchase_rows"] == 10
    assert report["cancellation_rows"] == 1
    assert report["rows_rejected"] == 7
    assert report["rejected_by_reason"] == {
        "missing_customer_id": 1,
        "negative_quantity": 1,
        "non_positive_unit_price": 1,
        "non_product_stock_code": 3,
        "unparseable_invoice_date": 1,
    }
    assert report["rejected_examples"]["non_product_stock_code"] == [4, 9, 11]  # line numbers, header = 1
    assert report["non_product_stock_codes"] == ["D", "M", "POST"]
    assert report["rows_read"] == report["rows_used"] + sum(report["rejected_by_reason"].values())
    assert report["files"] == {"users": 5, "items": 8, "events": 10, "orders": 7, "order_lines": 10}
    assert_landing_files(directory, report)


def test_online_retail_orders_and_totals(retail):
    directory, _ = retail
    orders = read(directory, "orders").set_index("order_id")
    assert orders["status"].to_dict() == {
        "536365": "completed",
        "536366": "completed",
        "536367": "completed",
        "C536383": "cancelled",
        "536386": "completed",
        "536389": "completed",
        "536390": "completed",
    }
    assert orders.loc["536365", "ordered_at"] == "2010-12-01T08:26:00Z"
    assert orders.loc["536389", "ordered_at"] == "2010-12-02T10:03:00Z"
    assert orders.loc["536366", "user_id"] == "17850"
    assert order_totals(directory) == {
        "536365": 35.64,  # 6 x 2.55 + 6 x 3.39; the POST line is excluded
        "536366": 11.10,
        "536367": 70.98,  # 32 x 1.69 + (4 x 2.95 + 2 x 2.55)
        "536386": 343.20,
        "536389": 51.00,
        "536390": 19.50,  # the zero-priced line is excluded
        "C536383": 4.65,
    }
    lines = read(directory, "order_lines").set_index(["order_id", "item_id"])
    assert lines.loc[("536367", "85123A"), "quantity"] == "6"
    assert lines.loc[("536367", "85123A"), "unit_price"] == "2.8167"
    assert lines.loc[("C536383", "35004C"), "quantity"] == "1"


def test_online_retail_purchases_are_events_and_cancellations_are_not(retail):
    directory, _ = retail
    events = read(directory, "events")
    assert set(events["event_type"]) == {"purchase"}
    assert events["quantity"].astype(int).sum() == 208
    assert "35004C" not in set(events["item_id"])
    lines = read(directory, "order_lines").merge(read(directory, "orders"), on="order_id")
    completed = lines[lines["status"] == "completed"]
    assert completed["quantity"].astype(int).sum() == events["quantity"].astype(int).sum()


def test_online_retail_users_and_items(retail):
    directory, _ = retail
    users = read(directory, "users").set_index("user_id")
    assert users["region"].to_dict() == {
        "13047": "United Kingdom",
        "15311": "United Kingdom",
        "16029": "France",
        "16250": "",
        "17850": "United Kingdom",
    }
    assert users.loc["17850", "signup_at"] == "2010-12-01T08:26:00Z"
    items = read(directory, "items").set_index("item_id")
    assert sorted(items.index) == ["22633", "22941", "35004C", "71053", "84879", "84880", "85099B", "85123A"]
    assert items.loc["85123A", "name"] == "WHITE HANGING HEART T-LIGHT HOLDER"
    assert items.loc["85123A", "price"] == "2.55"
    assert items.loc["85099B", "price"] == "1.8"
    assert (items["category_path"] == "").all()


def test_online_retail_missing_column_is_named(tmp_path):
    source = pd.read_csv(FIXTURES / "online_retail_small.csv", dtype=str).drop(columns="CustomerID")
    source.to_csv(tmp_path / "retail.csv", index=False)
    with pytest.raises(ValueError, match=r"\['CustomerID'\] not found.*'InvoiceNo'"):
        import_online_retail(tmp_path / "retail.csv", tmp_path / "out")


# --- generic interactions --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def interactions(tmp_path_factory):
    directory = tmp_path_factory.mktemp("interactions")
    return directory, import_interactions(FIXTURES / "interactions_small.csv", directory, **INTERACTION_COLUMNS)


def test_interactions_report_reconciles_with_reasons(interactions):
    directory, report = interactions
    assert report["rows_read"] == 17
    assert report["rows_used"] == 11
    assert report["rows_rejected"] == 6
    assert report["rejected_by_reason"] == {
        "invalid_price": 1,
        "invalid_quantity": 1,
        "missing_item": 1,
        "missing_user": 1,
        "unknown_event_type": 1,
        "unparseable_timestamp": 1,
    }
    assert report["rejected_examples"]["missing_user"] == [10]
    assert report["rows_read"] == report["rows_used"] + report["rows_rejected"]
    assert report["files"] == {"users": 4, "items": 4, "events": 11, "orders": 3, "order_lines": 4}
    assert_landing_files(directory, report)


def test_interactions_events(interactions):
    directory, _ = interactions
    events = read(directory, "events")
    assert events["event_type"].value_counts().to_dict() == {"purchase": 6, "view": 3, "cart": 1, "search": 1}
    by_time = events.set_index("event_at")
    assert by_time.loc["2026-01-07T10:00:00Z", "item_id"] == "p2"  # epoch seconds
    assert by_time.loc["2026-01-07T10:01:00Z", "item_id"] == "p3"  # epoch milliseconds
    assert by_time.loc["2026-01-08T09:00:00Z", "quantity"] == "3"  # no offset is UTC; " PURCHASE " matched
    assert (events.loc[events["event_type"] == "view", "quantity"] == "").all()
    assert events.loc[events["item_id"] == "p4", "quantity"].tolist() == ["1"]
    assert events.loc[events["event_type"] == "search", "item_id"].tolist() == [""]


def test_interactions_orders_users_and_items(interactions):
    directory, _ = interactions
    orders = read(directory, "orders")
    assert orders[["order_id", "user_id", "ordered_at", "status"]].values.tolist() == [
        ["O0000001", "u1", "2026-01-05T10:05:00Z", "completed"],
        ["O0000002", "u2", "2026-01-07T10:01:00Z", "completed"],
        ["O0000003", "u2", "2026-01-08T09:00:00Z", "completed"],
    ]
    assert order_totals(directory) == {"O0000001": 61.98, "O0000002": 5.5, "O0000003": 15.0}
    lines = read(directory, "order_lines").set_index(["order_id", "item_id"])
    assert lines.loc[("O0000001", "p2"), ["quantity", "unit_price"]].tolist() == ["2", "21.0"]

    users = read(directory, "users").set_index("user_id")["signup_at"].to_dict()
    assert users == {
        "u1": "2026-01-05T10:00:00Z",
        "u2": "2026-01-07T10:00:00Z",
        "u3": "2026-01-09T04:00:00Z",  # its rejected earlier rows do not count
        "u4": "2026-01-10T12:00:00Z",
    }
    items = read(directory, "items").set_index("item_id")
    assert items["category_path"].to_dict() == {"p1": "Home > Kitchen", "p2": "Books", "p3": "Groceries", "p4": "Toys"}
    assert items["price"].to_dict() == {"p1": "9.99", "p2": "21.0", "p3": "5.25", "p4": ""}


def test_interactions_without_optional_columns_are_purchases_without_orders(tmp_path):
    report = import_interactions(
        FIXTURES / "interactions_small.csv", tmp_path, user_col="visitor", item_col="product", time_col="ts"
    )
    assert report["rejected_by_reason"] == {"missing_item": 2, "missing_user": 1, "unparseable_timestamp": 1}
    assert report["rows_used"] == 13
    events = read(tmp_path, "events")
    assert set(events["event_type"]) == {"purchase"}
    assert set(events["quantity"]) == {"1"}
    assert report["files"]["orders"] == 0
    assert_landing_files(tmp_path, report)


def test_interactions_missing_column_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"\['user_id'\] not found.*'visitor'"):
        import_interactions(FIXTURES / "interactions_small.csv", tmp_path, item_col="product", time_col="ts")


def test_interactions_unknown_default_event_type(tmp_path):
    with pytest.raises(ValueError, match="default_event_type"):
        import_interactions(
            FIXTURES / "interactions_small.csv",
            tmp_path,
            user_col="visitor",
            item_col="product",
            time_col="ts",
            default_event_type="like",
        )


def test_a_failed_import_leaves_the_previous_output_and_no_partial_folder(tmp_path, monkeypatch):
    out = tmp_path / "landing"
    report = import_online_retail(FIXTURES / "online_retail_small.csv", out)
    before = {path.name: path.read_bytes() for path in out.iterdir()}

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(landing, "write_manifest", fail)  # the last step of the import
    with pytest.raises(OSError, match="disk full"):
        import_online_retail(FIXTURES / "online_retail_small.csv", out)
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["landing"]
    assert report["files"]["events"] == len(read(out, "events"))


def test_an_import_refuses_to_replace_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "mine.txt").write_text("not an import")
    with pytest.raises(ValueError, match="not an earlier import's output"):
        import_online_retail(FIXTURES / "online_retail_small.csv", tmp_path)
    assert (tmp_path / "mine.txt").exists()
