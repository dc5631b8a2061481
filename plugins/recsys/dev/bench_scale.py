"""``make bench-scale``: the whole DAG once, from an empty warehouse, at a chosen size; one table per stage.

``python -m recsys.dev.bench_scale --size M`` (or ``--data DIR`` for a landing
directory of your own) simulates the shop (cached under ``.local/bench``),
creates a new database for it on the warehouse server (the embedded one, or
the server of ``WAREHOUSE_URL``), gives Airflow a new home, runs the main DAG
once with ``airflow dags test`` and samples the resident memory of that
process tree every half second. It then reads the task instances from the
Airflow metadata DB and prints, per stage (a task, or a dbt layer's tasks
together), the wall seconds, the peak RSS while the stage ran and the rows it
reported (the counts a Python task returns, the rows in the layer's tables
for dbt). The last line reads exactly::

    DAG wall <seconds> s, work <seconds> s, overhead <percent> %, peak RSS <MB> MB

where *work* is the sum of the task durations and *overhead* is wall minus
work in percent of wall (DAG parsing, task start-up, scheduling). Each stage
also gets the CPU seconds (user + system) of the process tree while it ran,
and the line before the last gives the machine's 1-minute load average
(``/proc/loadavg``) over the run: on a shared machine wall seconds follow the
load, CPU seconds much less.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg2
from psycopg2 import sql

from recsys.db.warehouse import LOCAL_DIR, connect, create_database, warehouse_url
from recsys.dev import local
from recsys.dev.simulate import simulate
from recsys.dev.simulate_invoices import simulate_invoices

logger = logging.getLogger(__name__)

#: simulated shop per size (``recsys.dev.simulate.simulate`` arguments); L's users are 5.2 times as active,
#: about 50 million event lines (written in chunks of users, in bounded memory)
SIZES: dict[str, dict[str, int | float]] = {
    "S": {"users": 20_000, "items": 2_000, "days": 90, "seed": 7},
    "M": {"users": 100_000, "items": 20_000, "days": 90, "seed": 7},
    "L": {"users": 1_000_000, "items": 100_000, "days": 90, "seed": 7, "activity": 5.2},
}
#: invoice-shaped shop per size (``recsys.dev.simulate_invoices.simulate_invoices``): S is the UCI Online Retail
#: data set's size (about 4,000 customers, 500,000 invoice lines a year)
INVOICE_SIZES: dict[str, dict[str, int]] = {
    "S": {"customers": 4_000, "products": 4_000, "days": 365, "seed": 7},
    "M": {"customers": 20_000, "products": 20_000, "days": 365, "seed": 7},
    "L": {"customers": 200_000, "products": 100_000, "days": 365, "seed": 7},
}
#: the order stages are printed in; anything else follows
STAGE_ORDER = (
    "load",
    "check_raw",
    "dbt staging",
    "dbt marts",
    "dbt other",
    "train_and_evaluate",
    "evaluate_search",
    "recommend",
    "target_promotions",
    "check_marts_and_recs",
    "dbt publish",
    "swap_recs",
    "push_online",
)


@dataclass
class Stage:
    """One row of the table: tasks of one stage, their summed duration, the peak RSS while any ran."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_rss: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    intervals: list[tuple[float, float]] = field(default_factory=list)


class RssSampler(threading.Thread):
    """Sample the summed RSS and CPU time of this process's children (the DAG run) every ``interval`` seconds.

    ``samples`` holds (time, RSS bytes), ``cpu_samples`` (time, CPU seconds used by the tree so far: the sum over
    every process seen of its user + system time at its last sample) and ``load_samples`` the 1-minute load average.
    """

    def __init__(self, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.cpu_samples: list[tuple[float, float]] = []
        self.load_samples: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        cpu_seen: dict[int, float] = {}  # pid -> its CPU seconds at the last sample
        while not self.done.is_set():
            total = 0
            for proc in me.children(recursive=True):  # the airflow process and what it starts: a few
                try:
                    total += proc.memory_info().rss
                    times = proc.cpu_times()
                except psutil.Error:
                    continue
                cpu_seen[proc.pid] = max(cpu_seen.get(proc.pid, 0.0), times.user + times.system)
            now = time.time()
            self.samples.append((now, total))
            self.cpu_samples.append((now, sum(cpu_seen.values())))
            self.load_samples.append(os.getloadavg()[0])
            self.done.wait(self.interval)

    def cpu(self, start: float, end: float) -> float:
        """CPU seconds the tree used between ``start`` and ``end`` (epoch seconds), from the samples before each."""

        def used_by(moment: float) -> float:
            return max((cpu for at, cpu in self.cpu_samples if at <= moment), default=0.0)

        return max(0.0, used_by(end) - used_by(start))

    def peak(self, start: float | None = None, end: float | None = None) -> int:
        """Peak summed RSS in bytes between ``start`` and ``end`` (epoch seconds; default the whole run)."""
        inside = [rss for at, rss in self.samples if (start is None or at >= start) and (end is None or at <= end)]
        return max(inside, default=0)


def landing_for(size: str, shape: str = "web") -> Path:
    """The simulated shop of ``size`` and ``shape`` (web shop or invoice export), written once in ``.local/bench``."""

    out = LOCAL_DIR / "bench" / f"{size}-{shape}" / "shop"
    if not (out / "manifest.json").exists():
        started = time.perf_counter()
        if shape == "invoices":
            simulate_invoices(out, **INVOICE_SIZES[size])
        else:
            simulate(out, **SIZES[size])
        logger.info("simulated %s %s shop in %.0f s: %s", size, shape, time.perf_counter() - started, out)
    return out


def fresh_database(name: str, template: str | None = None) -> str:
    """A new database ``name`` on the warehouse server, dropped first if it exists: empty, or a copy of the
    database ``template`` (which nobody may be connected to).

    A copy is made file by file (``strategy file_copy``), on disk when the call returns. Postgres' default copies
    block by block through its buffers and the write-ahead log, which leaves gigabytes to write back while the
    next run starts: an incremental day right after such a copy waited 16.8 s on a query that takes under a
    second from a cold cache.
    """
    server = warehouse_url()
    url = urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    admin = psycopg2.connect(urlunsplit(urlsplit(server)._replace(path="/postgres")))
    try:
        admin.autocommit = True  # drop and create database run outside a transaction
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
            if template is not None:
                cursor.execute(
                    sql.SQL("create database {} template {} strategy file_copy").format(
                        *map(sql.Identifier, (name, template))
                    )
                )
    finally:
        admin.close()
    if template is None:
        create_database(url)
    return url


def stage_of(task_id: str) -> str:
    """The stage a task belongs to: its own id, or ``dbt <layer>`` for the DAG's ``dbt_<layer>`` build tasks."""
    return f"dbt {task_id.removeprefix('dbt_')}" if task_id.startswith("dbt_") else task_id


def task_instances(airflow_home: Path) -> list[dict]:
    """Every task instance of the run that ran (task id, start and end in epoch seconds) and its XCom return value.

    Tasks marked ``upstream_failed`` after a failure never ran: they are left out.
    """
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        rows = db.execute(
            "select task_id, start_date, end_date, duration, state from task_instance"
            " where start_date is not null and state is not 'upstream_failed'"
        ).fetchall()
        values = dict(db.execute("select task_id, value from xcom where key = 'return_value'").fetchall())
    instances = []
    for task_id, start, end, duration, state in rows:
        begin = datetime.fromisoformat(str(start)).timestamp()
        if end:
            finish = datetime.fromisoformat(str(end)).timestamp()
        else:  # still running when the run was stopped: until now
            finish = begin + float(duration) if duration else time.time()
        value = values.get(task_id)
        try:
            value = json.loads(value) if isinstance(value, str | bytes) else value
        except ValueError:
            value = None
        instances.append(dict(task_id=task_id, start=begin, end=finish, state=state, value=value))
    return instances


def table_rows(url: str) -> dict[str, int]:
    """Live rows per schema (``pg_stat_user_tables``), after an ``analyze`` so the counts are current."""
    with connect(url) as conn:
        with conn.cursor() as cursor:
            cursor.execute("analyze")
            cursor.execute("select schemaname, sum(n_live_tup)::bigint from pg_stat_user_tables group by 1")
            return dict(cursor.fetchall())


def _counts(value: object) -> dict[str, int]:
    """The integer counts of a task's XCom dict (the rows it reports)."""
    if not isinstance(value, dict):
        return {}
    return {key: item for key, item in value.items() if isinstance(item, int) and not isinstance(item, bool)}


def stages(instances: list[dict], sampler: RssSampler) -> dict[str, Stage]:
    """Group the task instances into stages."""
    table: dict[str, Stage] = defaultdict(Stage)
    for instance in instances:  # one per task: a few dozen
        stage = table[stage_of(instance["task_id"])]
        stage.seconds += instance["end"] - instance["start"]
        stage.cpu_seconds += sampler.cpu(instance["start"], instance["end"])
        stage.peak_rss = max(stage.peak_rss, sampler.peak(instance["start"], instance["end"]))
        stage.intervals.append((instance["start"], instance["end"]))
        for key, count in _counts(instance["value"]).items():
            stage.rows[key] = stage.rows.get(key, 0) + count
    return table


def render(
    table: dict[str, Stage], schema_rows: dict[str, int], wall: float, peak: int, load: list[float] | None = None
) -> str:
    """The printed table, the load average over the run (``load``: 1-minute samples) and the machine-readable line."""
    schema_of = {"dbt staging": "staging", "dbt marts": "analytics"}
    order = [name for name in STAGE_ORDER if name in table] + sorted(set(table) - set(STAGE_ORDER))
    lines = [f"{'stage':<22} {'seconds':>9} {'CPU s':>8} {'peak RSS MB':>12}  rows", "-" * 89]
    for name in order:  # a dozen stages
        stage = table[name]
        rows = dict(stage.rows)
        if name in schema_of:
            rows = {f"rows in {schema_of[name]}": schema_rows.get(schema_of[name], 0)}
        shown = ", ".join(f"{key} {value:,}" for key, value in list(rows.items())[:4])
        lines.append(
            f"{name:<22} {stage.seconds:>9.1f} {stage.cpu_seconds:>8.1f} {stage.peak_rss / 2**20:>12,.0f}  {shown}"
        )
    work = sum(stage.seconds for stage in table.values())
    overhead = 100.0 * (wall - work) / wall if wall > 0 else 0.0
    lines.append("-" * 89)
    if load:
        cpu = sum(stage.cpu_seconds for stage in table.values())
        lines.append(
            f"CPU {cpu:.1f} s in the stages; load average (1 min) during the run: "
            f"min {min(load):.2f}, mean {sum(load) / len(load):.2f}, max {max(load):.2f} ({os.cpu_count()} cores)"
        )
    lines += [
        f"DAG wall {wall:.1f} s, work {work:.1f} s, overhead {overhead:.1f} %, peak RSS {peak / 2**20:.0f} MB",
    ]
    return "\n".join(lines)


def run(landing_dir: Path, name: str) -> tuple[str, bool]:
    """Run the DAG once on ``landing_dir`` in a new database ``recsys_bench_<name>``.

    Returns the printed table and whether the DAG finished; a failed or interrupted (Ctrl-C) run still gets the
    table of the tasks that ran, a task stopped midway counted until the stop (``kill`` stops the run as Ctrl-C does).
    """
    url = fresh_database(f"recsys_bench_{name.lower()}")
    airflow_home = LOCAL_DIR / "bench" / name / "airflow"
    shutil.rmtree(airflow_home, ignore_errors=True)
    env = local.environment(url, landing_dir, airflow_home)
    local.prepare_airflow(env)
    sampler = RssSampler()
    sampler.start()
    started = time.time()
    stopped = ""
    try:
        local.run_dag(env, local.data_day(landing_dir))
    except (subprocess.CalledProcessError, RuntimeError, KeyboardInterrupt) as error:
        stopped = f"the DAG did not finish ({type(error).__name__}): the table holds the tasks that ran\n"
    finally:
        wall = time.time() - started
        sampler.done.set()
        sampler.join()
    table = stages(task_instances(airflow_home), sampler)
    return stopped + render(table, table_rows(url), wall, sampler.peak(), sampler.load_samples), not stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys.dev.bench_scale", description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="M", help="simulated shop size (default M)")
    parser.add_argument("--data", type=Path, help="a landing directory of your own instead of a simulated shop")
    parser.add_argument("--shape", choices=["web", "invoices"], default="web", help="simulated shop shape")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops the run as Ctrl-C does: with its table
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    landing_dir = args.data.resolve() if args.data else landing_for(args.size, args.shape)
    name = "data" if args.data else f"{args.size}_{args.shape}"
    print(f"bench-scale {name} ({landing_dir}), {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    table, finished = run(landing_dir, name)
    print(table)
    return 0 if finished else 1


if __name__ == "__main__":
    raise SystemExit(main())
