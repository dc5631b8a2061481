"""The loader against a real Postgres: COPY, quarantine with reasons, reconciliation, idempotent batches."""

from __future__ import annotations

import hashlib
import json

import psycopg2
import pytest

from recsys.ingest.load import LandingError, load_landing

USERS = (
    "user_id,signup_at,gender,is_personalization_allowed,favourite_colour\n"
    "U1,2026-01-01T00:00:00Z, F ,true,red\n"
    "U2,not-a-date,M,no,blue\n"
    ",2026-01-02,M,,green\n"
    "U4,2026-01-03 10:00,M,maybe,red\n"
    "U5,2026-01-03\n"
)
ITEMS = "item_id,price,stock_quantity\nI1,12.5,3\nI2,abc,1\nI3, 7 ,2.5\nI4,8,0\n"
EVENTS = (
    "user_id,item_id,event_type,event_at,quantity,price\n"
    "U1,I1,view,2026-01-05T10:00:00Z,,\n"
    "U1,,search,2026-01-05T10:01:00Z,,\n"
    "U1,,view,2026-01-05T10:02:00Z,,\n"
    'U1,I1,purchase,2026-01-05T10:03:00+01:00,2,"12.50"\n'
)
#: the next day's delivery: one more event
NEXT_DAY_EVENTS = EVENTS + "U1,I1,view,2026-01-06T10:00:00Z,,\n"


def write_landing(directory, users=USERS, items=ITEMS, events=EVENTS, extra=None):
    directory.mkdir(parents=True, exist_ok=True)
    files = {"users.csv": users, "items.csv": items, "events.csv": events, **(extra or {})}
    for name, text in files.items():
        (directory / name).write_bytes(text.encode() if isinstance(text, str) else text)
    return directory


def query(url, sql, params=()):
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def load(url, directory, batch_id="2026-01-06"):
    conn = psycopg2.connect(url)
    try:
        return {row["table_name"]: row for row in load_landing(conn, directory, batch_id)}
    finally:
        conn.close()


def test_counts_reconcile_and_bad_rows_are_quarantined_with_reasons(database, tmp_path):
    audit = load(database, write_landing(tmp_path / "landing"))

    assert {name: (row["rows_read"], row["rows_loaded"], row["rows_rejected"]) for name, row in audit.items()} == {
        "users": (5, 1, 4),
        "items": (4, 2, 2),
        "events": (4, 3, 1),
    }
    assert audit["users"]["ignored_columns"] == "favourite_colour"
    reasons = {row[0] for row in query(database, "select reason from quality.rejected_rows where table_name = 'users'")}
    assert reasons == {
        "signup_at: cannot parse 'not-a-date' as timestamp",
        "missing required value: user_id",
        "is_personalization_allowed: cannot parse 'maybe' as boolean",
        "expected 5 fields, got 2",
    }
    assert query(database, "select reason from quality.rejected_rows where table_name = 'items' order by 1") == [
        ("price: cannot parse 'abc' as numeric",),
        ("stock_quantity: cannot parse '2.5' as integer",),
    ]
    # strings stay as landed; types are parsed; offsets become UTC
    assert query(database, "select user_id, gender, is_personalization_allowed from raw.users") == [("U1", " F ", True)]
    purchase = query(
        database, "select event_at at time zone 'UTC', quantity, price from raw.events where event_type = 'purchase'"
    )
    assert str(purchase[0][0]) == "2026-01-05 09:03:00" and purchase[0][1:] == (2, 12.5)


def test_loading_a_batch_again_replaces_it(database, tmp_path):
    directory = write_landing(tmp_path / "landing")
    load(database, directory)
    load(database, directory)
    assert query(database, "select count(*) from raw.events") == [(3,)]
    assert query(database, "select count(*) from quality.rejected_rows") == [(7,)]
    # the same events file as another batch is yesterday's data passed off as today's: refused
    with pytest.raises(LandingError, match="the same file was loaded as batch '2026-01-06'"):
        load(database, directory, batch_id="2026-01-07")
    write_landing(directory, events=NEXT_DAY_EVENTS)
    load(database, directory, batch_id="2026-01-07")
    assert query(database, "select _batch_id, count(*) from raw.events group by 1 order by 1") == [
        ("2026-01-06", 3),
        ("2026-01-07", 4),
    ]


def test_a_snapshot_stores_only_the_rows_that_changed(database, tmp_path):
    """users.csv delivered whole every day: a row equal to its key's latest stored row is counted, not stored."""
    header = "user_id,signup_at,gender\n"
    days = {
        "2026-01-05": "U1,2026-01-01,F\nU2,2026-01-01,M\nU3,2026-01-01,F\n",
        # U1 unchanged; U2 changed; " U3" is U3 to staging but spelt differently, so not equal; U4 new
        "2026-01-06": "U1,2026-01-01,F\nU2,2026-01-01,F\n U3,2026-01-01,F\nU4,2026-01-02,M\n",
        # U1 twice in the batch: both kept (staging picks the last); U2 back to its first version; U4 unchanged
        "2026-01-07": "U1,2026-01-01,F\nU1,2026-01-01,M\nU2,2026-01-01,M\nU4,2026-01-02,M\n",
    }
    for day, users in days.items():
        write_landing(tmp_path / "shop" / day, users=header + users, events=f"{EVENTS}U1,I1,view,{day},,\n")
        load(database, tmp_path / "shop", day)
    counts = "select batch_id, rows_read, rows_loaded, rows_unchanged from quality.load_audit where table_name = %s"
    expected = [("2026-01-05", 3, 3, 0), ("2026-01-06", 4, 3, 1), ("2026-01-07", 4, 3, 1)]
    assert sorted(query(database, counts, ("users",))) == expected
    # items are a snapshot too: delivered the same three times, stored once
    assert [row[1:] for row in sorted(query(database, counts, ("items",)))] == [(4, 2, 0), (4, 0, 2), (4, 0, 2)]
    latest = """
        select distinct on (trim(user_id)) user_id, gender, _batch_id from raw.users
        order by trim(user_id), _load_seq desc, _row_number desc"""
    assert query(database, latest) == [
        ("U1", "M", "2026-01-07"),
        ("U2", "M", "2026-01-07"),
        (" U3", "F", "2026-01-06"),
        ("U4", "M", "2026-01-06"),
    ]
    # the last day delivered again: compared with the days before it, the same rows are kept
    load(database, tmp_path / "shop", "2026-01-07")
    assert sorted(query(database, counts, ("users",))) == expected
    assert query(database, "select count(*) from raw.users") == [(9,)]


def test_a_second_shop_is_refused_and_the_first_stays_as_it_was(database, tmp_path):
    load(database, write_landing(tmp_path / "shop_a"))
    with pytest.raises(LandingError, match=r"holds the shop loaded from .*shop_a.*its own database"):
        load(database, write_landing(tmp_path / "shop_b"), batch_id="2026-01-07")
    assert query(database, "select _batch_id, count(*) from raw.events group by 1") == [("2026-01-06", 3)]
    load(database, write_landing(tmp_path / "shop_a", events=NEXT_DAY_EVENTS), batch_id="2026-01-07")  # same shop


def test_a_load_does_not_wait_for_readers_of_the_raw_tables(database, tmp_path):
    directory = write_landing(tmp_path / "landing")
    load(database, directory)  # the tables exist now
    reader = psycopg2.connect(database)  # dbt or a check reading raw.events, its transaction still open
    try:
        with reader.cursor() as cur:
            cur.execute("select count(*) from raw.events")
        # the loader gives up on any lock it waits for: it must need none that a reader holds
        loader = psycopg2.connect(database, options="-c lock_timeout=2000")
        try:
            load_landing(loader, write_landing(directory, events=NEXT_DAY_EVENTS), "2026-01-07")
        finally:
            loader.close()
    finally:
        reader.close()
    assert query(database, "select count(*) from raw.events") == [(7,)]


def test_schema_changes_give_up_on_a_busy_table_with_a_clear_error(database, tmp_path, monkeypatch):
    directory = write_landing(tmp_path / "landing")
    load(database, directory)
    with psycopg2.connect(database) as conn, conn.cursor() as cur:  # as if the format gained the column since
        cur.execute("alter table raw.events drop column device_id")
    monkeypatch.setattr("recsys.ingest.raw_tables.DDL_LOCK_TIMEOUT", "200ms")
    write_landing(directory, events=NEXT_DAY_EVENTS)
    reader = psycopg2.connect(database)
    try:
        with reader.cursor() as cur:
            cur.execute("select count(*) from raw.events")
        with pytest.raises(LandingError, match="a reader held them for 200ms"):
            load(database, directory, batch_id="2026-01-07")
    finally:
        reader.close()
    load(database, directory, batch_id="2026-01-07")  # the reader is gone: the column is added, the batch loads
    assert query(database, "select count(*) from raw.events where _batch_id = '2026-01-07'") == [(4,)]


def test_quarantined_lines_are_written_in_batches_with_their_line_numbers(database, tmp_path, monkeypatch):
    monkeypatch.setattr("recsys.ingest.load.QUARANTINE_BATCH_ROWS", 2)  # flush every second bad line
    header, *good = EVENTS.splitlines()
    lines = [header]
    for n, line in enumerate(good * 2):  # 8 good lines, a line of 2 fields after each
        lines += [line, f"U{n},oops"]
    audit = load(database, write_landing(tmp_path / "landing", events="\n".join(lines) + "\n"))
    assert (audit["events"]["rows_read"], audit["events"]["rows_rejected"]) == (
        16,
        8 + 2,
    )  # and 2 views lack their item
    bad = query(
        database,
        "select line_number from quality.rejected_rows where table_name = 'events' and starts_with(reason, 'expected')"
        " order by 1",
    )
    assert [row[0] for row in bad] == list(range(3, 19, 2))  # line 1 is the header
    numbers = query(database, "select _row_number from raw.events order by 1")
    assert [row[0] for row in numbers] == [1, 2, 4, 5, 6, 8]  # the parsed rows kept (a view lacks its item)


@pytest.mark.parametrize(
    ("event_at", "stored"),
    [
        # a block without sub-microsecond values parses at microseconds, which reach years before 1677; a year
        # under 100 keeps its four digits on the way to COPY (written as "10-01-01", Postgres read 2001-10-01)
        (["0010-01-01", "0900-06-01T12:00:00+02:00"], ["0010-01-01 00:00:00", "0900-06-01 10:00:00"]),
        # nanoseconds are cut to Postgres's microseconds, not rounded, also before 1970 and at the earliest
        # nanosecond timestamp
        (
            ["2026-01-05T10:00:00.1234567Z", "1969-12-31T23:59:59.9999999Z", "1677-09-21T00:12:43.145224193Z"],
            ["2026-01-05 10:00:00.123456", "1969-12-31 23:59:59.999999", "1677-09-21 00:12:43.145224"],
        ),
    ],
)
def test_timestamps_are_stored_as_the_instant_written(database, tmp_path, event_at, stored):
    events = "user_id,item_id,event_type,event_at\n" + "".join(f"U1,I1,view,{value}\n" for value in event_at)
    load(database, write_landing(tmp_path / "landing", events=events))
    rows = query(database, "select (event_at at time zone 'UTC')::text from raw.events order by _row_number")
    assert [row[0] for row in rows] == stored


def test_a_value_of_only_unicode_white_space_is_missing(database, tmp_path):
    """White space is what ``str.isspace`` says (an ideographic space, NEL, a no-break space), not zero-width space."""
    events = (
        "user_id,item_id,event_type,event_at\n"
        "\u3000,I1,view,2026-01-05\n"
        "U1,\xa0\x1c\x85,view,2026-01-05\n"
        "U1,\u200b,view,2026-01-05\n"
    )
    load(database, write_landing(tmp_path / "landing", events=events))
    assert query(database, "select line_number, reason from quality.rejected_rows where table_name = 'events'") == [
        (2, "missing required value: user_id"),
        (3, "missing required value: item_id (only search events may omit it)"),
    ]
    assert query(database, "select item_id from raw.events") == [("\u200b",)]


def test_numbers_keep_the_text_of_their_float(database, tmp_path):
    """A price goes through a float: 22 is stored as 22.0, 12.50 as 12.5, 1e-7 as 0.0000001."""
    events = "user_id,item_id,event_type,event_at,quantity,price\n" + "".join(
        f"U1,I1,view,2026-01-05,{quantity},{price}\n"
        for quantity, price in [("2.0", "22"), ("1e3", "12.50"), ("", "1e-7")]
    )
    load(database, write_landing(tmp_path / "landing", events=events))
    rows = query(database, "select quantity, price::text from raw.events order by _row_number")
    assert rows == [(2, "22.0"), (1000, "12.5"), (None, "0.0000001")]


def test_a_last_block_of_only_malformed_lines_loads(database, tmp_path, monkeypatch):
    monkeypatch.setattr("recsys.ingest.load.BLOCK_SIZE", 1024)  # the file's last blocks hold no line that parses
    events = EVENTS + "U1,oops\n" * 200
    events = load(database, write_landing(tmp_path / "landing", events=events))["events"]
    # the view without its item and the 200 short lines are rejected
    assert (events["rows_read"], events["rows_loaded"], events["rows_rejected"]) == (204, 3, 201)


def test_batch_folder_is_preferred_over_the_landing_root(database, tmp_path):
    root = write_landing(tmp_path / "landing")
    write_landing(root / "2026-01-06", events=EVENTS.splitlines()[0] + "\nU9,I9,cart,2026-01-06T01:00:00Z,1,3\n")
    load(database, root)
    assert query(database, "select user_id from raw.events") == [("U9",)]


def test_non_utf8_bytes_reject_only_the_affected_rows(database, tmp_path):
    users = b"user_id,signup_at,region\nU1,2026-01-01,North\nU2,2026-01-01,Nord\xe9\n"
    audit = load(database, write_landing(tmp_path / "landing", users=users))
    assert (audit["users"]["rows_loaded"], audit["users"]["rows_rejected"]) == (1, 1)
    assert query(database, "select reason from quality.rejected_rows where table_name = 'users'") == [
        ("region: invalid UTF-8 bytes",)
    ]


@pytest.mark.parametrize(
    ("users", "message"),
    [
        ("", "the file is empty"),
        ("signup_at,gender\n2026-01-01,F\n", "missing required column(s) ['user_id']"),
        ("user_id,user_id,signup_at\n", "duplicate column names"),
    ],
)
def test_unusable_files_fail_with_a_clear_error_and_load_nothing(database, tmp_path, users, message):
    with pytest.raises(LandingError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load(database, write_landing(tmp_path / "landing", users=users))
    # the tables are made before the load (in their own transaction), but no row of the batch is kept
    counts = "select (select count(*) from raw.users), (select count(*) from quality.load_audit)"
    assert query(database, counts) == [(0, 0)]


def test_missing_required_file_is_an_error(database, tmp_path):
    directory = write_landing(tmp_path / "landing")
    (directory / "items.csv").unlink()
    with pytest.raises(LandingError, match="items.csv: required landing file is missing"):
        load(database, directory)


def test_header_only_file_loads_zero_rows(database, tmp_path):
    audit = load(database, write_landing(tmp_path / "landing", events=EVENTS.splitlines()[0] + "\n"))
    assert (audit["events"]["rows_read"], audit["events"]["rows_loaded"]) == (0, 0)


def test_a_line_that_does_not_parse_keeps_only_its_hash_when_the_file_has_pii(database, tmp_path):
    bad = "U3,2026-01-01,bob@example.com,+1 555 0199,extra"
    users = f"user_id,signup_at,email,phone\nU1,2026-01-01,,\n{bad}\n"
    audit = load(database, write_landing(tmp_path / "landing", users=users))
    assert (audit["users"]["rows_read"], audit["users"]["rows_rejected"]) == (2, 1)
    [(reason, record)] = query(
        database, "select reason, raw_record from quality.rejected_rows where table_name = 'users'"
    )
    assert reason == "expected 4 fields, got 5"
    assert json.loads(record) == {"sha256": hashlib.sha256(bad.encode()).hexdigest(), "chars": len(bad)}


def test_rejected_rows_keep_no_raw_pii(database, tmp_path):
    users = "user_id,signup_at,email,phone\nU1,not-a-date,ann@example.com,+1 555 0100\nU2,2026-01-01,,\n"
    load(database, write_landing(tmp_path / "landing", users=users))
    records = query(database, "select raw_record from quality.rejected_rows where table_name = 'users'")
    assert records == [('{"user_id":"U1","signup_at":"not-a-date","email":"<redacted>","phone":"<redacted>"}',)]


def test_every_day_folder_not_loaded_yet_is_loaded_oldest_first(database, tmp_path):
    """The documented daily layout DIR/<YYYY-MM-DD>/: a backfill loads each new day as its own batch."""
    from recsys.dev.local import data_day
    from recsys.ingest.load import load_new_days

    def deliver(day: str, events: str) -> None:
        write_landing(tmp_path / "shop" / day, events=events)

    deliver("2026-01-05", EVENTS)
    deliver("2026-01-06", NEXT_DAY_EVENTS)
    (tmp_path / "shop" / "notes").mkdir()  # not a day: ignored
    conn = psycopg2.connect(database)
    try:
        assert load_new_days(conn, tmp_path / "shop") == ["2026-01-05", "2026-01-06"]
        assert load_new_days(conn, tmp_path / "shop") == []  # nothing new
        deliver("2026-01-07", NEXT_DAY_EVENTS + "U1,I1,cart,2026-01-07T10:00:00Z,1,\n")
        assert data_day(tmp_path / "shop") == "2026-01-07"  # make run DATA=shop runs the DAG for the last day
        assert load_new_days(conn, tmp_path / "shop", before="2026-01-07") == []  # which the DAG loads itself
        assert load_new_days(conn, tmp_path / "shop") == ["2026-01-07"]
        deliver("api-2026-01-07", "user_id,item_id,event_type,event_at\nU1,I1,view,2026-01-07T11:00:00Z\n")
        assert load_new_days(conn, tmp_path / "shop") == ["api-2026-01-07"]  # the serving API's events of the day
    finally:
        conn.close()
    assert query(database, "select _batch_id, count(*) from raw.events group by 1 order by 1") == [
        ("2026-01-05", 3),
        ("2026-01-06", 4),
        ("2026-01-07", 5),
        ("api-2026-01-07", 1),
    ]


def test_a_file_shorter_than_its_manifest_says_is_refused(database, tmp_path):
    from recsys.ingest import landing

    directory = write_landing(tmp_path / "landing")
    landing.write_manifest(directory, rows={"users": 5, "items": 4, "events": 5})  # events.csv lost a row
    with pytest.raises(LandingError, match=r"events.csv: the manifest says 5 rows, the file has 4"):
        load(database, directory)
    assert query(database, "select count(*) from raw.users") == [(0,)]  # nothing of the batch kept
    landing.write_manifest(directory, rows={"users": 5, "items": 4, "events": 4})
    assert load(database, directory)["events"]["rows_read"] == 4


def test_a_utf16_file_is_refused_with_how_to_convert_it(database, tmp_path):
    directory = write_landing(tmp_path / "landing", events=EVENTS.encode("utf-16"))
    with pytest.raises(LandingError, match=r"events.csv: the file is UTF-16 .* `iconv -f UTF-16 -t UTF-8"):
        load(database, directory)
