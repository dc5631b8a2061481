"""Hostile strings through the importers, the loader and the CLI: nothing is executed, values round-trip exactly.

Every SQL statement the package builds from input uses parameters, ``COPY`` or quoted identifiers; these
tests push quotes, semicolons, SQL comments, backslashes, COPY's null marker, line breaks, unicode and very
long strings in as ids, names, categories, event types, column names, directory names and batch ids, then
check that every table is still there with the right row counts and that ``raw.*`` holds the values byte
for byte.
"""

from __future__ import annotations

import json

import pandas as pd
import psycopg2
import pytest

from recsys import cli
from recsys.ingest.load import load_landing
from recsys.reporting.report import export_recommendations

DROP = "'; drop table raw.events; --"
HOSTILE = [
    "'",
    '"',
    "it's",
    'say "hi"',
    ";",
    DROP,
    '"; drop table raw.events; --',
    "Robert'); delete from quality.load_audit; --",
    "$$; drop table raw.users; $$",
    "back\\slash\\",
    "\\N",
    "\\x00",
    "%s %(user_id)s {} {0}",
    "a,b",
    "line\nbreak",
    "crlf\r\nend",
    "tab\there",
    "ünïcødé 商品 🛒",
    "\u202eright-to-left",
    "x" * 60_000,
]
PADDED = [" padded ", "\tx "]  # kept as landed by the loader; the importers trim values
BATCH = "2026-01-06'; drop table raw.users; --"


def query(url, statement, params=()):
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall()


def assert_nothing_executed(url):
    tables = ["raw.users", "raw.items", "raw.events", "quality.load_audit", "quality.rejected_rows"]
    assert query(url, "select count(to_regclass(name)) from unnest(%s::text[]) as name", (tables,)) == [(len(tables),)]


def write_csv(path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, lineterminator="\n")


def test_loader_keeps_hostile_values_byte_exact(database, tmp_path):
    values = HOSTILE + PADDED
    landing = tmp_path / 'it\'s a "landing"; dir'
    write_csv(
        landing / "users.csv",
        pd.DataFrame({"user_id": values, "signup_at": "2026-01-01T00:00:00Z", DROP: values}),
    )
    write_csv(landing / "items.csv", pd.DataFrame({"item_id": values, "name": values, "category_path": values}))
    write_csv(
        landing / "events.csv",
        pd.DataFrame(
            {
                "user_id": values + ["U1"],
                "item_id": values + ["I1"],
                "event_type": values + ["view"],
                "event_at": "2026-01-05T10:00:00Z",
                "query": values + [""],
                "price": ["1"] * len(values) + [DROP],
            }
        ),
    )
    conn = psycopg2.connect(database)
    try:
        for _ in range(2):  # and a re-delivery of the hostile batch replaces it
            audit = {row["table_name"]: row for row in load_landing(conn, landing, BATCH)}
    finally:
        conn.close()

    assert_nothing_executed(database)
    assert {name: (row["rows_loaded"], row["rows_rejected"]) for name, row in audit.items()} == {
        "users": (len(values), 0),
        "items": (len(values), 0),
        "events": (len(values), 1),
    }
    assert audit["users"]["ignored_columns"] == DROP
    assert query(database, "select ignored_columns from quality.load_audit where table_name = 'users'") == [(DROP,)]
    assert query(database, "select user_id from raw.users order by _row_number") == [(value,) for value in values]
    assert query(database, "select item_id, name, category_path from raw.items order by _row_number") == [
        (value, value, value) for value in values
    ]
    assert query(database, "select user_id, item_id, event_type, query from raw.events order by _row_number") == [
        (value, value, value, value) for value in values
    ]
    assert query(database, "select distinct _batch_id from raw.events") == [(BATCH,)]
    assert query(database, "select batch_id, line_number, reason from quality.rejected_rows") == [
        (BATCH, len(values) + 2, f"price: cannot parse '{DROP}' as numeric")
    ]


def test_importers_and_cli_keep_hostile_values(database, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WAREHOUSE_URL", database)
    user_col, item_col, category_col = DROP, 'item "id"; --', "cat\\egory ;"
    source = tmp_path / "src dir; 'quoted'" / 'events "file".csv'
    write_csv(
        source,
        pd.DataFrame(
            {
                user_col: HOSTILE + ["u1"],
                item_col: HOSTILE + ["p1"],
                "ts": "2026-01-05T10:00:00Z",
                "kind": ["view"] * len(HOSTILE) + [DROP],
                category_col: HOSTILE + ["c"],
            }
        ),
    )
    out = tmp_path / 'out dir; it\'s "here"'
    cli.main(
        ["import", "interactions", str(source), "--out", str(out), "--user-col", user_col, "--item-col", item_col]
        + ["--time-col", "ts", "--event-type-col", "kind", "--category-col", category_col]
    )
    report = json.loads(capsys.readouterr().out)
    assert (report["rows_used"], report["rejected_by_reason"]) == (len(HOSTILE), {"unknown_event_type": 1})

    cli.main(["load", str(out), "--batch-id", BATCH])
    audit = json.loads(capsys.readouterr().out)
    assert {row["table_name"]: (row["rows_loaded"], row["rows_rejected"]) for row in audit} == {
        name: (count, 0) for name, count in report["files"].items()
    }
    assert_nothing_executed(database)
    assert sorted(query(database, "select user_id from raw.users")) == sorted((value,) for value in HOSTILE)
    items = dict(query(database, "select item_id, category_path from raw.items"))
    assert items == {value: value for value in HOSTILE}
    assert sorted(query(database, "select user_id, item_id from raw.events")) == sorted((v, v) for v in HOSTILE)
    assert query(database, "select distinct _batch_id from raw.events") == [(BATCH,)]


def test_online_retail_import_keeps_hostile_names_and_regions(database, tmp_path, capsys):
    n = len(HOSTILE)
    source = tmp_path / 'retail; it\'s "here".csv'
    write_csv(
        source,
        pd.DataFrame(
            {
                "InvoiceNo": [f"5{number:05d}" for number in range(n)],
                "StockCode": [f"{10000 + number}" for number in range(n)],
                "Description": HOSTILE,
                "Quantity": "1",
                "InvoiceDate": "12/13/2010 8:26",
                "UnitPrice": "2.5",
                "CustomerID": [f"{20000 + number}.0" for number in range(n)],
                "Country": HOSTILE,
            }
        ),
    )
    out = tmp_path / "retail out; --"
    cli.main(["import", "online-retail", str(source), "--out", str(out)])
    assert json.loads(capsys.readouterr().out)["rows_used"] == n
    conn = psycopg2.connect(database)
    try:
        audit = load_landing(conn, out, BATCH)
    finally:
        conn.close()
    assert {row["table_name"]: row["rows_rejected"] for row in audit} == dict.fromkeys(
        ["users", "items", "events", "orders", "order_lines"], 0
    )
    assert_nothing_executed(database)
    assert query(database, "select name from raw.items order by item_id") == [(value,) for value in HOSTILE]
    assert query(database, "select region from raw.users order by user_id") == [(value,) for value in HOSTILE]


def test_export_to_a_hostile_path_keeps_hostile_ids(database, tmp_path, monkeypatch, capsys, contract_tables):
    monkeypatch.setenv("WAREHOUSE_URL", database)
    contract_tables(database, "user_id_map", "user_recommendations")
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("alter table identity.user_id_map rename to published_user_id_map")  # as swap_recs publishes it
        cur.executemany(
            "insert into identity.published_user_id_map (user_id, shop_user_id) values (%s, %s)",
            [(f"p{n}", value) for n, value in enumerate(HOSTILE)],
        )
        cur.executemany(
            "insert into recs.user_recommendations (user_id, item_rank, item_id, score, model_name, reason_code,"
            " reason_text, run_id, generated_at) values (%s, 1, %s, 0.5, 'popularity', 'popular', %s, %s, now())",
            [(f"p{n}", value, value, DROP) for n, value in enumerate(HOSTILE)],
        )
    out = tmp_path / 'exports; it\'s "quoted"' / "recs $(rm -rf x).csv"
    cli.main(["export", "recommendations", "--out", str(out)])
    assert capsys.readouterr().out == f"wrote {len(HOSTILE)} recommendations to {out}\n"
    exported = pd.read_csv(out, dtype=str, keep_default_na=False)
    columns = ["user_id", "item_id", "reason_text"]
    assert sorted(exported[columns].itertuples(index=False, name=None)) == sorted((v, v, v) for v in HOSTILE)
    assert set(exported["run_id"]) == {DROP}


@pytest.mark.parametrize("column", ["user_id", "item_id", "event_type", "query"])
def test_nul_characters_are_rejected_with_a_reason(database, tmp_path, column):
    landing = tmp_path / "landing"
    write_csv(landing / "users.csv", pd.DataFrame({"user_id": ["U1"], "signup_at": ["2026-01-01"]}))
    write_csv(landing / "items.csv", pd.DataFrame({"item_id": ["I1"]}))
    event = {"user_id": "U1", "item_id": "I1", "event_type": "view", "event_at": "2026-01-05", "query": "q"}
    write_csv(landing / "events.csv", pd.DataFrame([event, {**event, column: "nul\x00" + DROP}]))
    conn = psycopg2.connect(database)
    try:
        audit = {row["table_name"]: row for row in load_landing(conn, landing, BATCH)}
    finally:
        conn.close()
    assert (audit["events"]["rows_loaded"], audit["events"]["rows_rejected"]) == (1, 1)
    [(reason, record)] = query(database, "select reason, raw_record from quality.rejected_rows")
    assert reason == f"{column}: contains a NUL character, which Postgres text cannot store"
    assert json.loads(record) == {**event, column: "nul\x00" + DROP}
    assert_nothing_executed(database)


FORMULAS = {  # as stored -> as exported: a spreadsheet shows the text, it never runs it
    '=HYPERLINK("http://evil.test","click")': '\'=HYPERLINK("http://evil.test","click")',
    "+cmd|' /C calc'!A0": "'+cmd|' /C calc'!A0",
    "-2+3": "'-2+3",
    "@SUM(1+1)": "'@SUM(1+1)",
    "\tx": "'\tx",
    "-42": "-42",  # a plain number stays as it is
    "plain": "plain",
}


def test_export_neutralises_formulas_and_never_leaves_a_partial_file(database, tmp_path, contract_tables):
    contract_tables(database, "user_id_map", "user_recommendations")
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("alter table identity.user_id_map rename to published_user_id_map")
        cur.executemany(
            "insert into identity.published_user_id_map (user_id, shop_user_id) values (%s, %s)",
            [(f"p{n}", value) for n, value in enumerate(FORMULAS)],
        )
        cur.executemany(
            "insert into recs.user_recommendations (user_id, item_rank, item_id, score, model_name, reason_code,"
            " reason_text, run_id) values (%s, 1, %s, 0.5, 'popularity', 'popular', %s, 'run_1')",
            [(f"p{n}", value, value) for n, value in enumerate(FORMULAS)],
        )
    out = tmp_path / "recs.csv"
    assert export_recommendations(database, out) == len(FORMULAS)
    exported = pd.read_csv(out, dtype=str, keep_default_na=False)
    for column in ("user_id", "item_id", "reason_text"):
        assert sorted(exported[column]) == sorted(FORMULAS.values()), column
    # a failing export (here: the table is gone) leaves the previous file as it was, and no partial file
    before = out.read_bytes()
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("drop table recs.user_recommendations")
    with pytest.raises(psycopg2.errors.UndefinedTable):
        export_recommendations(database, out)
    assert out.read_bytes() == before and sorted(path.name for path in tmp_path.iterdir()) == ["recs.csv"]
