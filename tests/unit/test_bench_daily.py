"""``recsys.dev.bench_daily``: two daily deliveries cut from one landing directory; the kept full run."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import psycopg2
import pytest

from recsys.dev import bench_daily, bench_scale


def write(folder: Path, name: str, rows: list[dict]) -> None:
    pd.DataFrame(rows).to_csv(folder / name, index=False)


def test_an_imported_export_is_cut_at_its_last_day_with_each_days_row_counts(tmp_path) -> None:
    """An export has no simulator end_date: the last day is the last with events; its manifest counts rows, so
    each day's folder counts its own (the loader refuses a file whose count differs)."""
    shop = tmp_path / "shop"
    shop.mkdir()
    write(
        shop,
        "events.csv",
        [
            {"user_id": "u1", "item_id": "i1", "event_type": "purchase", "event_at": "2011-12-07T10:00:00Z"},
            {"user_id": "u1", "item_id": "i2", "event_type": "purchase", "event_at": "2011-12-08T10:00:00Z"},
            {"user_id": "u2", "item_id": "i1", "event_type": "purchase", "event_at": "2011-12-09T09:00:00Z"},
            {"user_id": "u2", "item_id": "i2", "event_type": "purchase", "event_at": "not a date"},
        ],
    )
    write(
        shop,
        "orders.csv",
        [
            {"order_id": "o1", "user_id": "u1", "ordered_at": "2011-12-08T10:00:00Z"},
            {"order_id": "o2", "user_id": "u2", "ordered_at": "2011-12-09T09:00:00Z"},
        ],
    )
    write(shop, "order_lines.csv", [{"order_id": "o1", "item_id": "i2"}, {"order_id": "o2", "item_id": "i1"}])
    write(shop, "users.csv", [{"user_id": "u1"}, {"user_id": "u2"}])
    (shop / "manifest.json").write_text(json.dumps({"format_version": 1, "rows": {"events": 4, "orders": 2}}))

    assert bench_daily.split_last_day(shop, tmp_path / "daily") == ("2011-12-08", "2011-12-09")

    counts = {}
    for day in ("2011-12-08", "2011-12-09"):
        folder = tmp_path / "daily" / day
        counts[day] = json.loads((folder / "manifest.json").read_text())["rows"]
        for name, rows in counts[day].items():
            assert len(pd.read_csv(folder / f"{name}.csv")) == rows
    # the unparseable date stays with the big first delivery; the users snapshot is delivered both days
    assert counts == {
        "2011-12-08": {"events": 3, "orders": 1, "order_lines": 1, "users": 2},
        "2011-12-09": {"events": 1, "orders": 1, "order_lines": 1, "users": 2},
    }


def test_again_needs_a_kept_full_run(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(bench_daily, "LOCAL_DIR", tmp_path)
    with pytest.raises(SystemExit):
        bench_daily.main(["--size", "S", "--again"])
    assert "no full run kept" in capsys.readouterr().err


def execute(url: str, statement: str) -> list[tuple]:
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()  # a template copy needs its source without connections


def test_the_kept_full_run_is_copied_over_the_database(fresh_database, monkeypatch) -> None:
    """``--again`` starts from a copy of the warehouse the full run left, whatever the last run changed."""
    kept, used = fresh_database(), fresh_database()
    monkeypatch.setenv("WAREHOUSE_URL", kept)  # the server bench_scale.fresh_database works on
    execute(kept, "create table runs as select 'full' as run")
    kept_name, used_name = (urlsplit(url).path.lstrip("/") for url in (kept, used))

    assert bench_scale.fresh_database(used_name, template=kept_name) == used
    execute(used, "insert into runs values ('incremental')")
    bench_scale.fresh_database(used_name, template=kept_name)

    assert execute(used, "select run from runs") == [("full",)]


def test_the_full_runs_tables_are_vacuumed_and_analyzed_before_the_incremental_day(fresh_database) -> None:
    """Between the two runs the database gets autovacuum's day of work: every table vacuumed and analyzed."""
    url = fresh_database()
    execute(url, "create table facts as select generate_series(1, 1000) as fact_id")
    execute(url, "delete from facts where fact_id <= 10")

    bench_daily.vacuum_analyze(url)
    assert execute(
        url,
        "select n_live_tup, n_dead_tup, last_vacuum is not null, last_analyze is not null"
        " from pg_stat_user_tables where relname = 'facts'",
    ) == [(990, 0, True, True)]
