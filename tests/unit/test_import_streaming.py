"""Importers stream their source block by block: the landing files and the report do not depend on the block size.

Each case is imported with blocks of 256 bytes (two or three rows: every planted row sits at or near a block
boundary), 1 KB and one block for the whole file, and the outputs are compared byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from recsys.ingest import sources
from recsys.ingest.importers import import_interactions, import_online_retail
from recsys.ingest.parsing import AmbiguousDates, DateEvidence, parse_times

FIXTURES = Path(__file__).parent.parent / "fixtures"
BLOCK_SIZES = (256, 1024, 1 << 20)
INTERACTION_COLUMNS = {
    "user_col": "visitor",
    "item_col": "product",
    "time_col": "ts",
    "event_type_col": "type",
    "quantity_col": "qty",
    "price_col": "amount",
    "category_col": "cat",
}
RETAIL_HEADER = b"InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"


def planted_retail(path: Path) -> dict:
    """An Online Retail export of 60 good lines and planted bad ones; returns the expected rejections.

    Every other date reads as day/month and as month/day alike (month 1-12, day 1-7: neither reading is
    refused nor preferred, the file alone without it is refused as ambiguous); only line 63,
    ``12/13/2011``, proves month/day, so the events span 12 months.
    """
    lines, expected = [], {}

    def add(line: bytes, reason: str | None = None) -> None:
        lines.append(line)
        if reason:
            expected.setdefault(reason, []).append(len(lines) + 1)  # the header is line 1

    for i in range(60):
        if i == 10:
            add(b"540099,oops\n", "wrong_field_count")
        if i == 20:
            add(b"540098,21001,THING 1,1,3/3/2011 10:00,1.00,,United Kingdom\n", "missing_customer_id")
        if i == 30:
            add(b"540097,POST,POSTAGE,1,3/3/2011 10:00,18.00,12346.0,United Kingdom\n", "non_product_stock_code")
        if i == 40:
            add(lines[2], "duplicate_row")  # the same line scanned twice, far apart
        if i == 45:
            add(b"540096,21002,THING 2,1,soon,1.00,12346.0,United Kingdom\n", "unparseable_invoice_date")
        if i == 50:
            add(b"C540000,21000,THING 0,-1,1/1/2011 11:00,2.50,12346.0,United Kingdom\n")  # a cancellation
        if i == 55:
            add(b"540095,21003,MUG \x93BEST\x94,2,12/13/2011 9:00,3.00,12350.0,France\n")  # Windows-1252 quotes
        date = f"{1 + i % 12}/{1 + i % 7}/2011 10:{i:02d}"
        add(
            f"{540000 + i // 3},2{i % 7:04d},THING {i % 7},{1 + i % 5},{date},2.50,{12346 + i % 4}.0,Germany\n".encode()
        )
    add(b'540200,21000,THING 0,1,1/1/2011 10:00,1.00,12346.0,"United King', "unclosed_quote")  # truncated
    path.write_bytes(RETAIL_HEADER + b"".join(lines))
    return expected


def planted_interactions(path: Path) -> None:
    """Interactions with epochs, ISO times, searches, cart and purchase events and bad rows throughout."""
    rows = ["ts,visitor,product,type,qty,amount,cat"]
    for i in range(50):
        ts = str(1767780000 + 3600 * (i % 9)) if i % 2 else f"2026-01-{1 + i % 9:02d}T10:00:00Z"
        kind = ("view", "addtocart", "transaction", "search", "purchase")[i % 5]
        item = "" if kind == "search" else f"p{i % 6}"
        rows.append(f"{ts},u{i % 4},{item},{kind},{1 + i % 3},{(i % 4) * 2.5},{'Home' if i % 3 else 'Toys'}")
        if i % 11 == 5:
            rows.append(f"{ts},,p1,view,,,")  # missing user
        if i % 13 == 7:
            rows.append(rows[-1])  # a duplicate right after
    path.write_text("\n".join(rows) + "\n")


def outputs(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


CASES = {
    "online retail fixture": (import_online_retail, FIXTURES / "online_retail_small.csv", {}),
    "interactions fixture": (import_interactions, FIXTURES / "interactions_small.csv", INTERACTION_COLUMNS),
}


@pytest.mark.parametrize("case", [*CASES, "planted retail", "planted interactions"])
def test_the_output_does_not_depend_on_the_block_size(tmp_path, caplog, case):
    caplog.set_level("INFO")
    if case == "planted retail":
        importer, source, options = import_online_retail, tmp_path / "retail.csv", {}
        planted_retail(source)
    elif case == "planted interactions":
        importer, source, options = import_interactions, tmp_path / "interactions.csv", INTERACTION_COLUMNS
        planted_interactions(source)
    else:
        importer, source, options = CASES[case]
    results = []
    for block_size in BLOCK_SIZES:
        out = tmp_path / f"out-{block_size}"
        report = importer(source, out, block_size=block_size, **options)
        results.append((report, outputs(out)))
    assert results[0][0]["rows_read"] > 10 and results[0][0]["rows_rejected"] > 0
    for report, files in results[1:]:
        assert report == results[0][0]
        assert files == results[0][1]
    assert not any(name.startswith(".") for name in results[0][1]), "nothing set aside is left in the output"
    assert "does not fit" not in caplog.text, "the small blocks were read as they are"


def test_a_record_longer_than_the_block_is_read_with_larger_blocks(tmp_path, caplog):
    caplog.set_level("INFO")
    source = tmp_path / "retail.csv"
    long_name = "LONG " * 400  # a 2,000-character description, within the value limit
    line = f"540001,21000,{long_name},1,12/13/2011 9:00,1.00,12346.0,France\n"
    source.write_bytes(RETAIL_HEADER + b"540000,21000,THING,1,12/13/2011 9:00,1.00,12346.0,France\n" + line.encode())
    small = import_online_retail(source, tmp_path / "small", block_size=256)
    assert "does not fit in a block; reading blocks of 1024 bytes" in caplog.text
    whole = import_online_retail(source, tmp_path / "whole", block_size=1 << 20)
    assert small == whole and small["rows_used"] == 2
    assert outputs(tmp_path / "small") == outputs(tmp_path / "whole")


def test_planted_retail_rejections_and_the_late_evidence_of_month_first(tmp_path):
    """Read with two-row blocks: the counts, the line numbers and the day/month order are the whole file's."""
    source = tmp_path / "retail.csv"
    expected = planted_retail(source)
    report = import_online_retail(source, tmp_path / "out", block_size=256)
    assert report["rows_read"] == 68  # 60 good lines and 8 planted, 6 of them rejected
    assert report["rejected_examples"] == expected
    assert report["rejected_by_reason"] == {reason: 1 for reason in expected}
    assert report["rows_used"] == 62 and report["rows_read"] == report["rows_used"] + report["rows_rejected"]
    assert report["cancellation_rows"] == 1 and report["purchase_rows"] == 61
    assert report["values_read_as_windows_1252"] == 1
    assert report["non_product_stock_codes"] == ["POST"]
    events = pd.read_csv(tmp_path / "out" / "events.csv", dtype=str)
    months = pd.to_datetime(events["event_at"]).dt.month
    assert sorted(months.unique()) == list(range(1, 13)), "month/day, decided by line 63"
    with pytest.raises(AmbiguousDates):  # the good lines' dates alone
        parse_times(pd.Series([f"{1 + i % 12}/{1 + i % 7}/2011 10:{i:02d}" for i in range(60)]))
    assert events["event_at"].is_monotonic_increasing
    items = pd.read_csv(tmp_path / "out" / "items.csv", dtype=str, keep_default_na=False).set_index("item_id")
    assert items.loc["21003", "name"] == "MUG \u201cBEST\u201d"
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["rows"] == report["files"]


def test_date_evidence_gathered_in_blocks_decides_as_the_whole_column():
    values = pd.Series(["1/2/2011 10:00", "3/4/2011 10:00", "5/6/2011", "2011-05-01", "13/1/2011 9:00"])
    whole = DateEvidence().add(values)
    blocks = DateEvidence().add(values[:2]).add(values[2:4]).add(values[4:])
    assert whole.order() == blocks.order() == "day_first"
    undecided = pd.Series(["1/2/2011", "2/2/2011", "1/3/2011", "4/2/2011"])  # valid both ways: the spans decide
    assert DateEvidence().add(undecided) == DateEvidence().add(undecided[:1]).add(undecided[1:3]).add(undecided[3:])
    assert parse_times(values[:1], order=blocks.order()).iloc[0] == pd.Timestamp("2011-02-01 10:00", tz="UTC")
    with pytest.raises(AmbiguousDates, match="can be day/month or month/day"):
        DateEvidence().add(values[:2]).order()
    assert DateEvidence().add(pd.Series(["2011-05-01", ""])).order() is None


def test_key_counts_give_the_most_frequent_value_and_the_median_over_blocks():
    counts, prices = sources.KeyCounts("item", "name"), sources.KeyCounts("item", "price")
    first = pd.DataFrame({"item": ["a", "a", "b"], "name": ["X", "Y", ""], "price": [1.0, 4.0, 2.0]})
    second = pd.DataFrame({"item": ["a", "b", "a"], "name": ["Y", "Z", "X"], "price": [2.0, None, 3.0]})
    for block in (first, second):
        counts.add(block)
        prices.add(block)
    # a: X twice, Y twice -> X (ties: the smallest); b: Z; prices a 1, 2, 3, 4 -> 2.5; b 2 (the missing one ignored)
    assert counts.most_frequent().to_dict() == {"a": "X", "b": "Z"}
    assert prices.median().to_dict() == {"a": 2.5, "b": 2.0}


def test_seen_rows_find_repeats_within_and_across_blocks():
    seen = sources.SeenRows()
    first = pd.DataFrame({"a": ["1", "2", "1"], "b": ["x", "y", "x"]})
    second = pd.DataFrame({"a": ["2", "2", "3"], "b": ["y", "x", "z"]})
    assert seen.duplicated(first).tolist() == [False, False, True]
    assert seen.duplicated(second).tolist() == [True, False, False]
