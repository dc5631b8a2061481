"""The catalogue of bad inputs, end to end: the importers (run through the ``recsys`` CLI) and the loader into Postgres.

One case per catalogue entry, with its known outcome: a clear error (the file, the line, what is wrong, what
to do), or the rows set aside with their reasons and exact counts, and read = loaded + rejected. Where the
loader passes a value on to dbt staging on purpose (unknown event types, future timestamps, duplicates), the
case asserts the loader's behaviour; the "Bad input" table of docs/quality.md says where the row ends up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import pytest

from recsys import cli
from recsys.ingest.load import LandingError, load_landing

BATCH = "2026-01-06"
HUGE = 10 * 1024 * 1024  # a 10 MB value
USERS = "user_id,signup_at\nU1,2026-01-01T00:00:00Z\nU2,2026-01-01T00:00:00Z\n"
ITEMS = "item_id,name,price\nI1,Mug,12.50\nI2,Lamp,30\n"
EVENTS = "user_id,item_id,event_type,event_at,query,price\n"
VIEW = "U1,I1,view,2026-01-05T10:00:00Z,,\n"


def query(url, statement, params=()):
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall()


def load(url, directory, batch_id=BATCH):
    conn = psycopg2.connect(url)
    try:
        return {row["table_name"]: row for row in load_landing(conn, directory, batch_id)}
    finally:
        conn.close()


def counts(audit: dict) -> tuple[int, int, int]:
    return audit["rows_read"], audit["rows_loaded"], audit["rows_rejected"]


# --- the loader ---------------------------------------------------------------------------------------------


@dataclass
class LoadCase:
    events: bytes
    error: str | None = None  # a LandingError containing this text, and nothing loaded
    counts: tuple[int, int, int] | None = None  # events: read, loaded, rejected
    rejects: list[tuple[int, str]] = field(default_factory=list)  # (line_number, reason), by line
    loaded: list[tuple] = field(default_factory=list)  # (item_id, event_type, event_at UTC, query, price) by line
    loads: int = 1


TRUNCATED = "the file ends inside a quoted field: it is probably truncated (deliver the whole file again)"

LOAD_CASES = {
    "malformed line: unclosed quote": LoadCase(
        (EVENTS + VIEW + 'U1,I1,view,"2026-01-05T11:00:00Z,,\n' + VIEW).encode(),
        counts=(2, 1, 1),
        rejects=[(3, "expected 6 fields, got 4; the record runs over 2 lines, so a quote is probably not closed")],
        loaded=[("I1", "view", "2026-01-05 10:00:00", None, None)],
    ),
    "malformed line: quote inside an unquoted value": LoadCase(
        (EVENTS + 'U1,I"1,view,2026-01-05T10:00:00Z,,\n').encode(),
        counts=(1, 1, 0),
        loaded=[('I"1', "view", "2026-01-05 10:00:00", None, None)],
    ),
    "wrong column count": LoadCase(
        (EVENTS + VIEW + "U1,I1,view\n" + "U1,I1,view,2026-01-05T10:00:00Z,,1,extra\n").encode(),
        counts=(3, 1, 2),
        rejects=[(3, "expected 6 fields, got 3"), (4, "expected 6 fields, got 7")],
    ),
    "non-UTF-8 bytes": LoadCase(
        (EVENTS + VIEW).encode() + b"U1,,search,2026-01-05T10:00:00Z,caf\xe9,\n",
        counts=(2, 1, 1),
        rejects=[(3, "query: invalid UTF-8 bytes")],
    ),
    "empty file (0 bytes)": LoadCase(b"", error="events.csv: the file is empty"),
    "header only": LoadCase(EVENTS.encode(), counts=(0, 0, 0)),
    "unknown event type": LoadCase(
        (EVENTS + "U1,I1,wishlist,2026-01-05T10:00:00Z,,\n").encode(),
        counts=(1, 1, 0),
        loaded=[("I1", "wishlist", "2026-01-05 10:00:00", None, None)],
    ),
    "unparseable ids: blank": LoadCase(
        (EVENTS + VIEW + "  ,I1,view,2026-01-05T10:00:00Z,,\n" + "U1, ,view,2026-01-05T10:00:00Z,,\n").encode(),
        counts=(3, 1, 2),
        rejects=[
            (3, "missing required value: user_id"),
            (4, "missing required value: item_id (only search events may omit it)"),
        ],
    ),
    "prices as text": LoadCase(
        (
            EVENTS
            + 'U1,I1,purchase,2026-01-05T10:00:00Z,,"12,50"\n'
            + "U1,I1,purchase,2026-01-05T10:00:00Z,,$5\n"
            + "U1,I1,purchase,2026-01-05T10:00:00Z,,twelve\n"
            + "U1,I1,purchase,2026-01-05T10:00:00Z,, 12.5 \n"
        ).encode(),
        counts=(4, 1, 3),
        rejects=[
            (2, "price: cannot parse '12,50' as numeric"),
            (3, "price: cannot parse '$5' as numeric"),
            (4, "price: cannot parse 'twelve' as numeric"),
        ],
        loaded=[("I1", "purchase", "2026-01-05 10:00:00", None, 12.5)],
    ),
    "mixed date formats": LoadCase(
        (
            EVENTS
            + "U1,I1,view,2026-01-05T10:00:00Z,,\n"
            + "U1,I1,view,2026-01-05 11:00:00,,\n"
            + "U1,I1,view,2026-01-05T13:00:00+01:00,,\n"
            + "U1,I1,view,2026-01-06,,\n"
            + "U1,I1,view,05/01/2026 10:00,,\n"
            + "U1,I1,view,1767607200,,\n"
        ).encode(),
        counts=(6, 4, 2),
        rejects=[
            (6, "event_at: cannot parse '05/01/2026 10:00' as timestamp"),
            (7, "event_at: cannot parse '1767607200' as timestamp"),
        ],
        loaded=[
            ("I1", "view", "2026-01-05 10:00:00", None, None),
            ("I1", "view", "2026-01-05 11:00:00", None, None),
            ("I1", "view", "2026-01-05 12:00:00", None, None),
            ("I1", "view", "2026-01-06 00:00:00", None, None),
        ],
    ),
    "future dates": LoadCase(
        (EVENTS + "U1,I1,view,2099-01-01T00:00:00Z,,\n").encode(),
        counts=(1, 1, 0),
        loaded=[("I1", "view", "2099-01-01 00:00:00", None, None)],
    ),
    "duplicate rows": LoadCase(
        (EVENTS + VIEW + VIEW).encode(),
        counts=(2, 2, 0),
        loaded=[("I1", "view", "2026-01-05 10:00:00", None, None)] * 2,
    ),
    "the same batch delivered twice": LoadCase(
        (EVENTS + VIEW + "U1,I1,view\n").encode(),
        loads=2,
        counts=(2, 1, 1),
        rejects=[(3, "expected 6 fields, got 3")],
        loaded=[("I1", "view", "2026-01-05 10:00:00", None, None)],
    ),
    "truncated mid-line": LoadCase(
        (EVENTS + VIEW + "U1,I1,vi").encode(),
        counts=(2, 1, 1),
        rejects=[(3, "expected 6 fields, got 3")],
    ),
    "truncated mid-quoted-field": LoadCase(
        (EVENTS + VIEW + 'U1,I1,purchase,2026-01-05T10:00:00Z,,"12.').encode(),
        counts=(2, 1, 1),
        rejects=[(3, TRUNCATED)],
    ),
    "truncated mid-quoted-field: not the last column": LoadCase(
        (EVENTS + VIEW + 'U1,,search,2026-01-05T10:00:00Z,"red mu').encode(),
        counts=(2, 1, 1),
        rejects=[(3, "expected 6 fields, got 5")],
    ),
    "huge field (10 MB)": LoadCase(
        (EVENTS + VIEW + "U1,,search,2026-01-05T10:00:00Z," + "x" * HUGE + ",\n").encode(),
        counts=(2, 1, 1),
        rejects=[(3, f"query: a value of {HUGE} characters is longer than the limit of 65536")],
    ),
    "NUL byte": LoadCase(
        (EVENTS + VIEW + "U1,I\x001,view,2026-01-05T10:00:00Z,,\n").encode(),
        counts=(2, 1, 1),
        rejects=[(3, "item_id: contains a NUL character, which Postgres text cannot store")],
    ),
}


def write_landing(directory, events: bytes, users: str = USERS, items: str = ITEMS):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "users.csv").write_text(users)
    (directory / "items.csv").write_text(items)
    (directory / "events.csv").write_bytes(events)
    return directory


@pytest.mark.parametrize("case", LOAD_CASES.values(), ids=LOAD_CASES.keys())
def test_loader_bad_input(database, tmp_path, case):
    directory = write_landing(tmp_path / "landing", case.events)
    if case.error:
        with pytest.raises(LandingError, match=case.error):
            load(database, directory)
        assert query(database, "select count(*) from raw.events") == [(0,)]  # tables made, no row kept
        return
    for _ in range(case.loads):
        audit = load(database, directory)
    assert counts(audit["events"]) == case.counts
    assert query(
        database, "select rows_read, rows_loaded, rows_rejected from quality.load_audit where table_name = 'events'"
    ) == [case.counts]
    assert (
        query(
            database,
            "select line_number, reason from quality.rejected_rows where table_name = 'events' order by line_number",
        )
        == case.rejects
    )
    if case.loaded:
        rows = query(
            database,
            "select item_id, event_type, to_char(event_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS'), query,"
            " price::float from raw.events order by _row_number",
        )
        assert rows == case.loaded
    assert query(database, "select count(*) from raw.events") == [(case.counts[1],)]


def test_a_redelivered_batch_replaces_every_table_of_the_batch(database, tmp_path):
    reviews = "user_id,item_id,rating,reviewed_at\nU1,I1,5,2026-01-05T10:00:00Z\nU1,I1,six,2026-01-05T10:00:00Z\n"
    directory = write_landing(tmp_path / "landing", (EVENTS + VIEW).encode())
    (directory / "reviews.csv").write_text(reviews)
    assert counts(load(database, directory)["reviews"]) == (2, 1, 1)
    (directory / "reviews.csv").unlink()
    assert set(load(database, directory)) == {"users", "items", "events"}
    assert query(
        database,
        "select (select count(*) from raw.reviews), (select count(*) from quality.rejected_rows),"
        " (select count(*) from quality.load_audit where table_name = 'reviews')",
    ) == [(0, 0, 0)]
    assert query(database, "select count(*) from raw.events") == [(1,)]


def test_huge_rejected_value_is_stored_shortened(database, tmp_path):
    events = (EVENTS + "U1,,search,2026-01-05T10:00:00Z," + "x" * HUGE + ",\n").encode()
    load(database, write_landing(tmp_path / "landing", events))
    [(record,)] = query(database, "select raw_record from quality.rejected_rows")
    assert json.loads(record)["query"] == "x" * 1_000 + "..."


def test_a_record_larger_than_the_read_block_is_a_clear_error(database, tmp_path, monkeypatch):
    monkeypatch.setattr("recsys.ingest.load.BLOCK_SIZE", 1 << 20)
    events = (EVENTS + VIEW + "U1,,search,2026-01-05T10:00:00Z," + "x" * (2 << 20) + ",\n").encode()
    with pytest.raises(LandingError, match=r"events.csv: cannot be read as CSV .* longer than 1 MB"):
        load(database, write_landing(tmp_path / "landing", events))
    assert query(database, "select count(*) from raw.events") == [(0,)]  # tables made, no row kept


def test_a_header_name_that_is_not_utf8_is_an_ignored_column(database, tmp_path):
    events = b"user_id,item_id,event_type,event_at,caf\xe9\nU1,I1,view,2026-01-05T10:00:00Z,x\n"
    audit = load(database, write_landing(tmp_path / "landing", events))["events"]
    assert (counts(audit), audit["ignored_columns"]) == ((1, 1, 0), "caf\ufffd")


# --- the importers, through the CLI, then the loader ---------------------------------------------------------

INTERACTIONS = "user,item,type,ts,price\n"
INTERACTION_ARGS = ["--user-col", "user", "--item-col", "item", "--time-col", "ts", "--event-type-col", "type"]
INTERACTION_ARGS += ["--price-col", "price"]
RETAIL = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
#: month/day/year as in the UCI layout: the 13 tells the importer the order (12/1/2010 alone could be either)
SALE = "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/13/2010 8:26,2.55,17850.0,United Kingdom\n"


@dataclass
class ImportCase:
    source: bytes
    error: str | None = None  # the CLI exits with 2 and this text on stderr
    read: int = 0
    used: int = 0
    rejected: dict[str, list[int]] = field(default_factory=dict)  # reason -> line numbers
    events: list[tuple] = field(default_factory=list)  # (user_id, item_id, event_type, event_at, price) as landed
    legacy: int = 0  # values read as Windows-1252
    imports: int = 1


INTERACTION_CASES = {
    "malformed line: unclosed quote": ImportCase(
        (INTERACTIONS + "u1,p1,view,2026-01-05T10:00:00Z,\n" + 'u1,"p2,view,2026-01-05T11:00:00Z,\n').encode()
        + b"u2,p1,view,2026-01-05T12:00:00Z,\n",
        read=2,
        used=1,
        rejected={"unclosed_quote": [3]},
        events=[("u1", "p1", "view", "2026-01-05T10:00:00Z", "")],
    ),
    "malformed line: quote inside an unquoted value": ImportCase(
        (INTERACTIONS + 'u1,p"1,view,2026-01-05T10:00:00Z,' + "\n").encode(),
        read=1,
        used=1,
        events=[("u1", 'p"1', "view", "2026-01-05T10:00:00Z", "")],
    ),
    "wrong column count": ImportCase(
        (INTERACTIONS + "u1,p1,view,2026-01-05T10:00:00Z,\nu1,p1,view\nu1,p1,view,2026-01-05T10:00:00Z,1,x\n").encode(),
        read=3,
        used=1,
        rejected={"wrong_field_count": [3, 4]},
    ),
    "non-UTF-8 bytes": ImportCase(
        INTERACTIONS.encode()
        + b"u1,caf\xe9,view,2026-01-05T10:00:00Z,\n"
        + "u1,naïve,view,2026-01-05T11:00:00Z,\n".encode(),
        read=2,
        used=2,
        legacy=1,
        events=[
            ("u1", "café", "view", "2026-01-05T10:00:00Z", ""),
            ("u1", "naïve", "view", "2026-01-05T11:00:00Z", ""),
        ],
    ),
    "empty file (0 bytes)": ImportCase(b"", error="the file is empty; it needs a header row"),
    "header only": ImportCase(INTERACTIONS.encode()),
    "unknown event type": ImportCase(
        (INTERACTIONS + "u1,p1,wishlist,2026-01-05T10:00:00Z,\nu1,p1,addtocart,2026-01-05T11:00:00Z,\n").encode(),
        read=2,
        used=1,
        rejected={"unknown_event_type": [2]},
        events=[("u1", "p1", "cart", "2026-01-05T11:00:00Z", "")],
    ),
    "unparseable ids: blank": ImportCase(
        (INTERACTIONS + "  ,p1,view,2026-01-05T10:00:00Z,\nu1, ,view,2026-01-05T10:00:00Z,\n").encode(),
        read=2,
        rejected={"missing_item": [3], "missing_user": [2]},
    ),
    "prices as text": ImportCase(
        (
            INTERACTIONS
            + 'u1,p1,purchase,2026-01-05T10:00:00Z,"12,50"\n'
            + "u1,p1,purchase,2026-01-05T10:01:00Z,$5\n"
            + "u1,p1,purchase,2026-01-05T10:02:00Z,inf\n"
            + "u1,p1,purchase,2026-01-05T10:03:00Z, 12.5 \n"
        ).encode(),
        read=4,
        used=1,
        rejected={"invalid_price": [2, 3, 4]},
        events=[("u1", "p1", "purchase", "2026-01-05T10:03:00Z", "12.5")],
    ),
    "mixed date formats": ImportCase(
        (
            INTERACTIONS
            + "u1,p1,view,2026-01-05T10:00:00Z,\n"
            + "u1,p1,view,2026-01-05 11:00:00,\n"
            + "u1,p1,view,2026-01-05T13:00:00+01:00,\n"
            + "u1,p1,view,1767618000,\n"
            + "u1,p1,view,1767621600000,\n"
            + "u1,p1,view,05/01/2026 10:00,\n"
        ).encode(),
        read=6,
        used=5,
        rejected={"unparseable_timestamp": [7]},
        events=[("u1", "p1", "view", f"2026-01-05T{hour}:00:00Z", "") for hour in range(10, 15)],
    ),
    "Windows-1252 bytes": ImportCase(
        INTERACTIONS.encode() + b"u1,\x93mug\x94 \x80 5,view,2026-01-05T10:00:00Z,\n",
        read=1,
        used=1,
        legacy=1,
        events=[("u1", "\u201cmug\u201d \u20ac 5", "view", "2026-01-05T10:00:00Z", "")],
    ),
    "UTF-16 file": ImportCase(
        (INTERACTIONS + "u1,p1,view,2026-01-05T10:00:00Z,\n").encode("utf-16"), error="the file is UTF-16"
    ),
    "compact dates and microsecond epochs": ImportCase(
        (INTERACTIONS + "u1,p1,view,20260105,\nu1,p2,view,1767607200000000,\n").encode(),
        read=2,
        used=2,
        events=[("u1", "p1", "view", "2026-01-05T00:00:00Z", ""), ("u1", "p2", "view", "2026-01-05T10:00:00Z", "")],
    ),
    "future dates": ImportCase(
        (INTERACTIONS + "u1,p1,view,2099-01-01T00:00:00Z,\n").encode(),
        read=1,
        used=1,
        events=[("u1", "p1", "view", "2099-01-01T00:00:00Z", "")],
    ),
    "duplicate rows": ImportCase(
        (INTERACTIONS + "u1,p1,purchase,2026-01-05T10:00:00Z,3\n" * 2).encode(),
        read=2,
        used=1,
        rejected={"duplicate_row": [3]},
        events=[("u1", "p1", "purchase", "2026-01-05T10:00:00Z", "3")],
    ),
    "the same batch delivered twice": ImportCase(
        (INTERACTIONS + "u1,p1,view,2026-01-05T10:00:00Z,\n").encode(),
        imports=2,
        read=1,
        used=1,
        events=[("u1", "p1", "view", "2026-01-05T10:00:00Z", "")],
    ),
    "truncated mid-line": ImportCase(
        (INTERACTIONS + "u1,p1,view,2026-01-05T10:00:00Z,\nu1,p1,vi").encode(),
        read=2,
        used=1,
        rejected={"wrong_field_count": [3]},
    ),
    "truncated mid-quoted-field": ImportCase(
        (INTERACTIONS + 'u1,p1,purchase,2026-01-05T10:00:00Z,3\nu1,p1,purchase,2026-01-05T10:00:00Z,"12.').encode(),
        read=2,
        used=1,
        rejected={"unclosed_quote": [3]},
    ),
    "truncated mid-quoted-field: not the last column": ImportCase(
        (INTERACTIONS + "u1,p1,view,2026-01-05T10:00:00Z," + "\n" + 'u1,"p2,vi').encode(),
        read=2,
        used=1,
        rejected={"wrong_field_count": [3]},
    ),
    "huge field (10 MB)": ImportCase(
        (
            INTERACTIONS + "u1,p1,view,2026-01-05T10:00:00Z,\nu1," + "x" * HUGE + ",view,2026-01-05T10:00:00Z,\n"
        ).encode(),
        read=2,
        used=1,
        rejected={"value_too_long": [3]},
    ),
    "NUL byte": ImportCase(
        (INTERACTIONS + "u1,p1,view,2026-01-05T10:00:00Z,\nu1,p\x001,view,2026-01-05T10:00:00Z,\n").encode(),
        read=2,
        used=1,
        rejected={"nul_character": [3]},
    ),
}

RETAIL_CASES = {
    "wrong column count": ImportCase(
        (RETAIL + SALE + "536366,22633,HAND WARMER,6\n").encode(), read=2, used=1, rejected={"wrong_field_count": [3]}
    ),
    "non-UTF-8 bytes": ImportCase(
        RETAIL.encode() + b"536365,85123A,CAF\xc9 MUG,6,12/13/2010 8:26,2.55,17850.0,United Kingdom\n",
        read=1,
        used=1,
        legacy=1,
    ),
    "empty file (0 bytes)": ImportCase(b"", error="the file is empty; it needs a header row"),
    "header only": ImportCase(RETAIL.encode()),
    "unparseable ids: CustomerID not a whole number": ImportCase(
        (
            RETAIL
            + SALE
            + "536366,22633,HAND WARMER,6,12/13/2010 8:28,1.85,abc,United Kingdom\n"
            + "536367,22633,HAND WARMER,6,12/13/2010 8:28,1.85,1.785e4,United Kingdom\n"
        ).encode(),
        read=3,
        used=1,
        rejected={"invalid_customer_id": [3, 4]},
    ),
    "prices as text": ImportCase(
        (RETAIL + SALE + "536366,22633,HAND WARMER,6,12/13/2010 8:28,£1.85,17850.0,United Kingdom\n").encode(),
        read=2,
        used=1,
        rejected={"invalid_unit_price": [3]},
    ),
    "mixed date formats": ImportCase(
        (
            RETAIL
            + SALE
            + "536366,22633,HAND WARMER,6,2010-12-01T08:28:00Z,1.85,17850.0,United Kingdom\n"
            + "536367,22633,HAND WARMER,6,2/30/2010 8:28,1.85,17850.0,United Kingdom\n"
        ).encode(),
        read=3,
        used=2,
        rejected={"unparseable_invoice_date": [4]},
    ),
    "day-first dates (a UK export)": ImportCase(
        (
            RETAIL
            + "536365,85123A,MUG,6,01/12/2010 08:26,2.55,17850.0,United Kingdom\n"
            + "536366,22633,HAND WARMER,6,13/12/2010 09:00,1.85,17850.0,United Kingdom\n"
        ).encode(),
        read=2,
        used=2,
        events=[
            ("17850", "85123A", "purchase", "2010-12-01T08:26:00Z", "2.55"),
            ("17850", "22633", "purchase", "2010-12-13T09:00:00Z", "1.85"),
        ],
    ),
    "ambiguous day and month": ImportCase(
        (RETAIL + "536365,85123A,MUG,6,01/12/2010 08:26,2.55,17850.0,United Kingdom\n").encode(),
        error="can be day/month or month/day",
    ),
    "future dates": ImportCase(
        (RETAIL + "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/13/2099 8:26,2.55,17850.0,UK\n").encode(),
        read=1,
        used=1,
        events=[("17850", "85123A", "purchase", "2099-12-13T08:26:00Z", "2.55")],
    ),
    "duplicate rows": ImportCase((RETAIL + SALE + SALE).encode(), read=2, used=1, rejected={"duplicate_row": [3]}),
    "truncated mid-line": ImportCase(
        (RETAIL + SALE + "536366,22633,HAND WAR").encode(), read=2, used=1, rejected={"wrong_field_count": [3]}
    ),
    "truncated mid-quoted-field": ImportCase(
        (RETAIL + SALE + '536366,22633,HAND WARMER,6,12/13/2010 8:28,1.85,17850.0,"United Ki').encode(),
        read=2,
        used=1,
        rejected={"unclosed_quote": [3]},
    ),
    "huge field (10 MB)": ImportCase(
        (RETAIL + SALE + "536366,22633," + "x" * HUGE + ",6,12/13/2010 8:28,1.85,17850.0,United Kingdom\n").encode(),
        read=2,
        used=1,
        rejected={"value_too_long": [3]},
    ),
}


def run_import(source: str, path, out, args: list[str], capsys) -> tuple[int, str, str]:
    try:
        cli.main(["import", source, str(path), "--out", str(out), *args])
        code = 0
    except SystemExit as exit:
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def check_import(database, tmp_path, capsys, case: ImportCase, source: str, args: list[str]):
    path = tmp_path / "source.csv"
    path.write_bytes(case.source)
    out = tmp_path / "landing"
    for _ in range(case.imports):
        code, stdout, stderr = run_import(source, path, out, args, capsys)
    if case.error:
        assert code == 2 and stderr.startswith(f"recsys: error: {path}: ") and case.error in stderr
        assert "Traceback" not in stderr and not out.exists()
        return
    report = json.loads(stdout)
    assert (report["rows_read"], report["rows_used"], report["rows_rejected"]) == (
        case.read,
        case.used,
        case.read - case.used,
    )
    assert report["rejected_examples"] == case.rejected
    assert report["rejected_by_reason"] == {reason: len(lines) for reason, lines in case.rejected.items()}
    assert report["values_read_as_windows_1252"] == case.legacy
    # what the importer writes always loads whole
    for _ in range(case.imports):
        audit = load(database, out)
    assert {name: row["rows_rejected"] for name, row in audit.items()} == {name: 0 for name in report["files"]}
    assert {name: row["rows_loaded"] for name, row in audit.items()} == report["files"]
    assert query(database, "select count(*) from raw.events") == [(report["files"]["events"],)]
    if case.events:
        rows = query(
            database,
            "select user_id, item_id, event_type,"
            " to_char(event_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), coalesce(price::text, '')"
            " from raw.events order by event_at, _row_number",
        )
        assert rows == case.events


@pytest.mark.parametrize("case", INTERACTION_CASES.values(), ids=INTERACTION_CASES.keys())
def test_import_interactions_bad_input(database, tmp_path, capsys, case):
    check_import(database, tmp_path, capsys, case, "interactions", INTERACTION_ARGS)


@pytest.mark.parametrize("case", RETAIL_CASES.values(), ids=RETAIL_CASES.keys())
def test_import_online_retail_bad_input(database, tmp_path, capsys, case):
    check_import(database, tmp_path, capsys, case, "online-retail", [])


def test_import_of_a_missing_file_names_it(tmp_path, capsys):
    code, _, stderr = run_import("online-retail", tmp_path / "nope.csv", tmp_path / "out", [], capsys)
    assert code == 2 and stderr == f"recsys: error: {tmp_path / 'nope.csv'}: no such file\n"


def test_docs_table_is_this_catalogue():
    page = (Path(__file__).resolve().parents[2] / "docs" / "quality.md").read_text()
    section = page.split("\n## Bad input\n")[1].split("\n## ")[0]
    rows = {line[2:].split(" | ")[0] for line in section.splitlines() if line.startswith("| ")}
    assert rows - {"input"} == set(LOAD_CASES) | set(INTERACTION_CASES) | set(RETAIL_CASES)
