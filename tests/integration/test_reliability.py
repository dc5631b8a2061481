"""Reliability on real Postgres and real dbt: idempotent re-runs, atomic publish, crash recovery, backfill.

A full DAG run takes 3-4 minutes here, so these tests run the DAG's steps in sequence with the same code the
tasks call (:func:`run_interval`): the loader, ``dbt run`` of the transform models, training and
recommendations, ``dbt run`` of the publish models into the build schema, and
:func:`recsys.serving.publish.swap_recs`.
The checks are left out: the two quality gates and dbt's data tests (the DAG's ``dbt build``) read the tables
and change none (``test_pipeline_e2e.py`` runs them).
``tests/integration/test_pipeline_e2e.py`` runs the real DAG, which ends with the same swap.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg2
import pytest

from recsys.db.warehouse import REPO_ROOT, connect
from recsys.dev.local import BIN, environment
from recsys.dev.simulate import simulate
from recsys.ingest import load
from recsys.orchestration import publishing, training
from recsys.serving import publish

SHOP = {"users": 1_000, "items": 200, "days": 45, "seed": 5}
#: the public contract tables (docs/CONTRACTS.md) compared between runs
CONTRACT_TABLES = (
    "analytics.dim_users",
    "analytics.dim_items",
    "analytics.fct_interactions",
    "analytics.fct_searches",
    "analytics.fct_orders",
    "analytics.fct_order_lines",
    "analytics.fct_reviews",
    "analytics.user_profiles",
    "analytics.user_interest_tags",
    "recs.user_recommendations",
    "recs.similar_items",
    "recs.cold_start_recommendations",
    "recs.model_evaluations",
    "recs.model_search",
    "recs.runs",
)
#: wall-clock columns, which differ between two runs of the same data by design: when a row was loaded
#: (fct_interactions.loaded_at), when dbt last wrote a row of an incremental model (refreshed_at), when a model
#: task started and finished, how long a fit took.
#: generated_at is the data interval end and stays in.
WALL_CLOCK_COLUMNS = {"loaded_at", "refreshed_at", "started_at", "finished_at", "fit_seconds"}
#: tables holding every model run, not only the published one: a backfill has more runs than its equivalent
ALL_RUNS_TABLES = {"recs.model_evaluations", "recs.model_search", "recs.runs"}


def run_id_for(day: date) -> str:
    """The run id of the daily interval holding ``day`` (as ``recsys.orchestration.tasks.run_id_for`` of its end)."""
    return f"run_{day + timedelta(days=1):%Y%m%dT%H%M%S}"


def dbt(env: dict[str, str], day: date, *args: str) -> None:
    """Run dbt on the project for the interval holding ``day`` as the cosmos tasks do: the run's settings as
    environment variables (dbt's partial parse holds), its own target path (other tests parse in parallel)."""
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)
    settings = {
        "RECSYS_AS_OF": end.isoformat(),
        "RECSYS_RUN_ID": run_id_for(day),
        "RECSYS_RECS_SCHEMA": publish.BUILD_SCHEMA,
    }
    subprocess.run(
        [str(BIN / "dbt"), *args, "--project-dir", str(REPO_ROOT / "dbt_project"), "--target-path", env["TARGET"]],
        env=env | settings,
        check=True,
        capture_output=True,
    )


def build_recs(env: dict[str, str], day: date) -> None:
    """The DAG's ``publish`` group: the recs models, built in the build schema."""
    dbt(env, day, "run", "--select", "tag:publish")


def run_interval(url: str, env: dict[str, str], landing_dir: Path, day: date) -> None:
    """The DAG's steps for the daily interval holding ``day``, in order (see the module docstring)."""
    start = datetime.combine(day, datetime.min.time(), UTC)
    end = start + timedelta(days=1)
    run_id = run_id_for(day)
    with connect(url) as conn:
        load.load_landing(conn, landing_dir, day.isoformat())
    dbt(env, day, "run", "--exclude", "tag:publish")
    with connect(url) as conn:
        training.train_and_evaluate(conn, run_id, start, end)
    with connect(url) as conn:
        publishing.generate_recommendations(conn, run_id, end)
    build_recs(env, day)
    with connect(url) as conn:
        publish.swap_recs(conn, run_id)


def query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql, params or None)
        return cur.fetchall()


def checksums(url: str, published_only: bool = False) -> dict[str, tuple[int, str]]:
    """Rows and md5 of the ordered rows of each contract table, without :data:`WALL_CLOCK_COLUMNS`.

    With ``published_only`` the tables of every run keep only the published run's rows.
    """
    (published,) = query(url, "select run_id from recs.runs where is_published")[0]
    sums = {}
    for table in CONTRACT_TABLES:
        schema, name = table.split(".")
        columns = [
            column
            for (column,) in query(
                url,
                "select column_name from information_schema.columns"
                " where table_schema = %s and table_name = %s order by ordinal_position",
                (schema, name),
            )
            if column not in WALL_CLOCK_COLUMNS
        ]
        row = ", ".join(f'"{column}"' for column in columns)
        where = "where run_id = %s" if published_only and table in ALL_RUNS_TABLES else ""
        sums[table] = query(
            url,
            f"select count(*), md5(coalesce(string_agg(line, E'\\n' order by line), ''))"
            f" from (select row({row})::text as line from {table} {where}) as lines",
            (published,) if where else (),
        )[0]
    return sums


def split_by_day(shop: Path, out: Path, days: list[date]) -> None:
    """Write ``shop`` as daily deliveries ``out/<day>/``: each day's events, users and items as full snapshots.

    The first day gets every event up to its end and all other files; later days get their own events and
    header-only other files.
    """
    with (shop / "events.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        at = header.index("event_at")
        rows = list(reader)
    for index, day in enumerate(days):
        folder = out / day.isoformat()
        folder.mkdir(parents=True)
        shutil.copy(shop / "manifest.json", folder)
        for path in shop.glob("*.csv"):
            if path.name in ("users.csv", "items.csv") or (index == 0 and path.name != "events.csv"):
                shutil.copy(path, folder)
            elif path.name != "events.csv":
                (folder / path.name).write_text(path.read_text(encoding="utf-8").split("\n", 1)[0] + "\n")
        first, last = (None if index == 0 else day.isoformat()), day.isoformat()
        mine = [row for row in rows if (first is None or row[at][:10] >= first) and row[at][:10] <= last]
        if index == len(days) - 1:
            mine += [row for row in rows if row[at][:10] > last]
        with (folder / "events.csv").open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows([header, *mine])


@pytest.fixture(scope="module")
def clean_shop(tmp_path_factory):
    """A small clean shop (no dirty rows, so it splits into days line by line) and its last three days."""
    out = tmp_path_factory.mktemp("reliability_shop")
    simulate(out, dirty=False, **SHOP)
    end = date.fromisoformat(json.loads((out / "manifest.json").read_text())["end_date"])
    days = [end - timedelta(days=2), end - timedelta(days=1), end]
    daily = tmp_path_factory.mktemp("reliability_daily")
    split_by_day(out, daily, days)
    return daily, days


def dbt_environment(url: str, tmp_path_factory) -> dict[str, str]:
    env = environment(url, airflow_home=tmp_path_factory.mktemp("airflow"))
    env["TARGET"] = str(tmp_path_factory.mktemp("dbt_target"))
    return env


@pytest.fixture(scope="module")
def backfilled(fresh_database, clean_shop, tmp_path_factory):
    """Three consecutive daily intervals run in order on a fresh database; returns URL, env, days, checksums."""
    daily, days = clean_shop
    url = fresh_database()
    env = dbt_environment(url, tmp_path_factory)
    for day in days:
        run_interval(url, env, daily, day)
    return url, env, days, checksums(url, published_only=True)


@pytest.fixture(scope="module")
def equivalent(fresh_database, clean_shop, tmp_path_factory):
    """The documented equivalent of the backfill: the first two deliveries loaded, then one run for the last day.

    Returns the checksums of its published run.
    """
    daily, days = clean_shop
    url = fresh_database()
    env = dbt_environment(url, tmp_path_factory)
    with connect(url) as conn:
        for day in days[:2]:
            load.load_landing(conn, daily, day.isoformat())
    run_interval(url, env, daily, days[-1])
    return checksums(url, published_only=True)


# Runs first (pytest keeps file order): the tests after it publish other runs of the backfilled warehouse.
def test_rerunning_an_interval_leaves_identical_contract_tables(backfilled, clean_shop):
    url, env, days, _ = backfilled
    first = checksums(url)
    assert all(rows for rows, _ in first.values()), first
    run_interval(url, env, clean_shop[0], days[-1])
    assert checksums(url) == first


def test_backfill_of_three_days_equals_one_run_over_the_same_deliveries(backfilled, equivalent):
    url, _, days, backfill = backfilled
    assert [row[0] for row in query(url, "select run_id from recs.runs order by 1")] == [run_id_for(d) for d in days]
    assert backfill == equivalent


READER_SQL = """
select 'user_recommendations', run_id, count(*) from recs.user_recommendations group by run_id
union all
select 'similar_items', run_id, count(*) from recs.similar_items group by run_id
union all
select 'cold_start_recommendations', run_id, count(*) from recs.cold_start_recommendations group by run_id
union all
select 'runs', run_id, count(*) from recs.runs where is_published group by run_id
"""


def published_run(url: str) -> str:
    """The one run every recs table holds (fails on a mix or a missing table)."""
    rows = query(url, READER_SQL)
    assert {row[0] for row in rows} == {"user_recommendations", "similar_items", "cold_start_recommendations", "runs"}
    assert len({row[1] for row in rows}) == 1, rows
    return rows[0][1]


def test_readers_see_one_whole_run_while_publishes_swap(backfilled):
    url, env, days, _ = backfilled
    seen, problems, stop = [], [], threading.Event()

    def read() -> None:
        conn = psycopg2.connect(url)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                while not stop.is_set():
                    try:
                        cur.execute(READER_SQL)
                        rows = cur.fetchall()
                    except psycopg2.Error as error:
                        problems.append(repr(error))
                        continue
                    tables = {row[0] for row in rows}
                    runs = {row[1] for row in rows}
                    if len(tables) != 4 or len(runs) != 1:
                        problems.append(rows)
                    seen.append(next(iter(runs), None))
        finally:
            conn.close()

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for day in (days[1], days[2]):
            build_recs(env, day)
            with connect(url) as conn:
                publish.swap_recs(conn, run_id_for(day))
            time.sleep(0.5)
    finally:
        stop.set()
        reader.join()
    assert problems == []
    # the reader saw both runs, each swap as one step
    assert set(seen) == {run_id_for(days[1]), run_id_for(days[2])}
    assert sum(1 for before, after in zip(seen, seen[1:], strict=False) if before != after) == 2
    assert published_run(url) == run_id_for(days[2])


SWAP_SCRIPT = (
    "import sys, psycopg2; from recsys.serving import publish;"
    " publish.swap_recs(psycopg2.connect(sys.argv[1]), sys.argv[2])"
)


def test_a_crash_before_or_during_the_swap_keeps_the_previous_run(backfilled):
    url, env, days, _ = backfilled
    old, new = run_id_for(days[2]), run_id_for(days[1])
    assert published_run(url) == old
    before = checksums(url)
    build_recs(env, days[1])  # the new run is built and tested in the build schema ...
    # ... and the swap crashes: killed while it waits for a reader's lock, inside its transaction
    blocker = psycopg2.connect(url)
    with blocker.cursor() as cur:
        cur.execute("select count(*) from recs.runs")  # holds a lock on recs.runs until rollback
        swap = subprocess.Popen(
            [sys.executable, "-c", SWAP_SCRIPT, url, new],
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "plugins")},
        )
        deadline = time.monotonic() + 30
        while not query(url, "select 1 from pg_locks where not granted and mode = 'AccessExclusiveLock'"):
            assert time.monotonic() < deadline and swap.poll() is None, "the swap never waited for the lock"
            time.sleep(0.01)
        swap.send_signal(signal.SIGKILL)
        swap.wait()
    blocker.rollback()
    blocker.close()
    assert published_run(url) == old and checksums(url) == before, "recs still holds the previous run, entirely"
    # a swap that fails its checks (a build of another run) changes nothing either
    with connect(url) as conn, pytest.raises(publish.PublishError):
        publish.swap_recs(conn, "run_that_was_not_built")
    assert checksums(url) == before
    # the retry publishes the new run
    with connect(url) as conn:
        assert publish.swap_recs(conn, new)["run_id"] == new
    assert published_run(url) == new
    assert query(url, "select count(*) from pg_namespace where nspname in ('recs_build', 'recs_previous')") == [(0,)]


def test_a_load_killed_mid_copy_leaves_nothing_and_a_reload_loads_one_copy(database, shop, tmp_path):
    # a landing directory with a big events file: the shop's events repeated
    landing = tmp_path / "landing"  # one shop: the batch "base" as delivered, the batch "big" with more events
    shutil.copytree(shop, landing / "base")
    shutil.copytree(shop, landing / "big")
    lines = (shop / "events.csv").read_text(encoding="utf-8").split("\n", 1)
    body = lines[1] if lines[1].endswith("\n") else lines[1] + "\n"
    with (landing / "big" / "events.csv").open("w", encoding="utf-8") as handle:
        handle.write(lines[0] + "\n")
        copies = max(1, 600_000 // body.count("\n"))
        for _ in range(copies):
            handle.write(body)
    with connect(database) as conn:
        load.load_landing(conn, landing, "base")
    base = query(database, "select count(*) from raw.events")[0][0]
    loader = subprocess.Popen(
        [sys.executable, "-c", "from recsys.cli import main; main()", "load", str(landing), "--batch-id", "big"],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "plugins"), "WAREHOUSE_URL": database},
    )
    deadline = time.monotonic() + 120
    while not query(
        database, "select 1 from pg_stat_progress_copy where relid = 'raw.events'::regclass and tuples_processed > 0"
    ):
        assert time.monotonic() < deadline and loader.poll() is None, "the loader never reached the events COPY"
        time.sleep(0.005)
    loader.send_signal(signal.SIGKILL)
    loader.wait()
    # the killed transaction left nothing of the batch
    deadline = time.monotonic() + 30
    while query(database, "select 1 from pg_stat_activity where state = 'active' and query ilike 'copy%'"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert query(database, "select count(*) from raw.events") == [(base,)]
    assert query(database, "select count(*) from quality.load_audit where batch_id = 'big'") == [(0,)]
    assert query(database, "select count(*) from quality.rejected_rows where batch_id = 'big'") == [(0,)]
    # loading again loads exactly one copy, and the counts reconcile with the file
    with connect(database) as conn:
        load.load_landing(conn, landing, "big")
    audit = query(
        database,
        "select table_name, rows_read, rows_loaded, rows_rejected, rows_unchanged from quality.load_audit"
        " where batch_id = 'big'",
    )
    assert len(audit) == len({row[0] for row in audit})
    for table, read, loaded, rejected, unchanged in audit:
        assert read == loaded + rejected + unchanged
        assert query(database, f"select count(*) from raw.{table} where _batch_id = 'big'") == [(loaded,)]
        assert query(
            database, "select count(*) from quality.rejected_rows where batch_id = 'big' and table_name = %s", (table,)
        ) == [(rejected,)]
    events = dict((row[0], row[1]) for row in audit)["events"]
    with (landing / "big" / "events.csv").open(newline="", encoding="utf-8", errors="replace") as handle:
        assert events == sum(1 for _ in csv.reader(handle)) - 1
    assert query(database, "select count(*) from raw.events where _batch_id = 'base'") == [(base,)]
