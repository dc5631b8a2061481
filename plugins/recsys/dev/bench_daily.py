"""``python -m recsys.dev.bench_daily``: a full DAG run, then the next day's incremental run; both tables, the ratio.

The simulated shop of ``--size`` and ``--shape`` (a web shop or an invoice export, cached like ``make
bench-scale``'s) is cut into two daily deliveries: the day before the last (every event, order and review up to
its end, with the users, items and promotions) and the last day (its own events, orders with their lines, reviews,
redemptions and social edges; users, items and promotions again, as a shop delivers snapshots). A new database
gets the DAG run for the first day (a full run: nothing to carry from), then the run for the last day with
``RECSYS_FULL_RUN_DAYS`` naming only the first day's weekday, so the second run is incremental: it loads only its
day, dbt's incremental models take only what changed, and the model tasks carry the champion and re-score only
the touched users. Between the two runs the database gets the ``vacuum (analyze)`` autovacuum would give it in
the day between them (timed and printed apart: it is in neither run). Each run prints ``make bench-scale``'s stage
table; the last line reads ``daily <seconds> s / full <seconds> s = <percent> %``.

The warehouse after the full run is kept as a database template (``<database>_full``, its wall seconds in
``full.json``): ``--again`` copies it back and runs only the incremental day, so a change to that day's code is
measured against the same warehouse in a minute or two instead of a whole bench, several times in a row (the
copy takes as much disk as the warehouse: about 3 GB at M).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import psycopg2

from recsys.db.warehouse import LOCAL_DIR
from recsys.dev import bench_scale, local
from recsys.orchestration.schedule import WEEKDAYS

logger = logging.getLogger(__name__)

#: per landing file, the column that dates a row (files without one are snapshots, delivered both days). A row goes
#: to the last day's delivery when its date is that day; every other row (the dirt's unparseable and future dates
#: too, so the big batch keeps the simulator's shares of them) to the first
DATED = {
    "events.csv": "event_at",
    "orders.csv": "ordered_at",
    "reviews.csv": "reviewed_at",
    "redemptions.csv": "redeemed_at",
    "social_edges.csv": "created_at",
}


def last_day(shop: Path) -> date:
    """The simulator's ``end_date`` (manifest), else the last day with events (an imported export has none)."""
    manifest = json.loads((shop / "manifest.json").read_text())
    if "end_date" in manifest:
        return date.fromisoformat(manifest["end_date"])
    days = pd.read_csv(shop / "events.csv", usecols=["event_at"], dtype=str, keep_default_na=False)["event_at"]
    days = days.str.slice(0, 10)
    return date.fromisoformat(days[days.str.fullmatch(r"\d{4}-\d{2}-\d{2}")].max())


def split_last_day(shop: Path, out: Path) -> tuple[str, str]:
    """Write ``out/<day before>/`` and ``out/<last day>/`` from ``shop`` (see the module docstring).

    A manifest that counts the rows of each file (an imported export's) gets each folder's own counts.
    """
    last = last_day(shop)
    first = last - timedelta(days=1)
    parts: dict[date, dict[str, pd.DataFrame]] = {first: {}, last: {}}
    for path in shop.glob("*.csv"):
        # a dirty shop's unparseable lines are dropped here (the loader would quarantine them either way)
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, on_bad_lines="skip", encoding_errors="replace")
        if path.name in DATED:
            late = frame[DATED[path.name]].str.slice(0, 10) == last.isoformat()
        elif path.name == "order_lines.csv":
            orders = pd.read_csv(shop / "orders.csv", dtype=str, keep_default_na=False, on_bad_lines="skip")
            late_orders = orders.loc[orders["ordered_at"].str.slice(0, 10) == last.isoformat(), "order_id"]
            late = frame["order_id"].isin(late_orders)
        else:  # a snapshot: delivered both days
            late = None
        parts[first][path.name] = frame if late is None else frame[~late]
        parts[last][path.name] = frame if late is None else frame[late]
    manifest = json.loads((shop / "manifest.json").read_text())
    for day, files in parts.items():
        folder = out / day.isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        for name, frame in files.items():
            frame.to_csv(folder / name, index=False)
        if "rows" in manifest:
            manifest["rows"] = {name.removesuffix(".csv"): len(frame) for name, frame in files.items()}
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return first.isoformat(), last.isoformat()


def timed_run(url: str, landing_dir: Path, day: str, name: str, extra_env: dict[str, str]) -> tuple[float, str]:
    """Run the DAG for ``day`` on ``url`` with its own Airflow home; its wall seconds and stage table."""
    airflow_home = LOCAL_DIR / "bench" / "daily" / name / "airflow"
    shutil.rmtree(airflow_home, ignore_errors=True)
    env = local.environment(url, landing_dir, airflow_home) | extra_env
    local.prepare_airflow(env)
    sampler = bench_scale.RssSampler()
    sampler.start()
    started = time.time()
    try:
        local.run_dag(env, day)
    finally:
        wall = time.time() - started
        sampler.done.set()
        sampler.join()
    table = bench_scale.stages(bench_scale.task_instances(airflow_home), sampler)
    return wall, bench_scale.render(table, bench_scale.table_rows(url), wall, sampler.peak())


def vacuum_analyze(url: str) -> float:
    """``vacuum (analyze)`` every table of ``url``'s database; the seconds it took.

    Autovacuum's work in the day between two daily runs: a shop's next run starts a day after the full run, on
    tables autovacuum has vacuumed and analyzed since. Run right after it, the incremental run would share the
    two cores with autovacuum's pass over the millions of rows the full run wrote.
    """
    conn = psycopg2.connect(url)
    try:
        conn.autocommit = True  # vacuum runs outside a transaction
        started = time.time()
        with conn.cursor() as cursor:
            cursor.execute("vacuum (analyze)")
        return time.time() - started
    finally:
        conn.close()  # a template copy needs its source without connections


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys.dev.bench_daily", description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(bench_scale.SIZES), default="S", help="simulated shop size")
    parser.add_argument("--shape", choices=["web", "invoices"], default="web", help="simulated shop shape")
    parser.add_argument(
        "--again", action="store_true", help="only the incremental day again, on a copy of the kept full run"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    name = args.size if args.shape == "web" else f"{args.size}-{args.shape}"
    daily = LOCAL_DIR / "bench" / "daily" / name / "landing"
    database = f"recsys_bench_daily_{name.lower().replace('-', '_')}"
    kept = daily.parent / "full.json"  # the full run's days and wall seconds, for --again
    print(f"bench-daily {name} ({daily}), {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    if args.again:
        if not kept.exists():
            parser.error(f"no full run kept in {kept}: run without --again first")
        first, last, full = json.loads(kept.read_text())
    else:
        kept.unlink(missing_ok=True)
        shutil.rmtree(daily, ignore_errors=True)
        first, last = split_last_day(bench_scale.landing_for(args.size, args.shape), daily)
    url = bench_scale.fresh_database(database, template=f"{database}_full" if args.again else None)
    schedule = {"RECSYS_FULL_RUN_DAYS": WEEKDAYS[date.fromisoformat(first).weekday()]}
    if not args.again:
        full, table = timed_run(url, daily, first, "full", schedule)
        print(f"full run for {first}:\n{table}")
        # what autovacuum does in the day between the two runs, timed apart: in neither run's wall
        print(f"vacuum (analyze) between the runs: {vacuum_analyze(url):.1f} s")
        bench_scale.fresh_database(f"{database}_full", template=database)
        kept.write_text(json.dumps([first, last, full]))
    incremental, table = timed_run(url, daily, last, "incremental", schedule)
    print(f"incremental run for {last}:\n{table}")
    print(f"daily {incremental:.1f} s / full {full:.1f} s = {100 * incremental / full:.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
