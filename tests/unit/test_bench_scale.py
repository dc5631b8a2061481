"""``recsys.dev.bench_scale``: tasks grouped into stages, and the table's machine-readable last line."""

from __future__ import annotations

import re
import sqlite3
import time
from datetime import UTC, datetime

from recsys.dev import bench_scale


def test_tasks_are_grouped_into_stages_by_dbt_layer() -> None:
    assert bench_scale.stage_of("load") == "load"
    assert bench_scale.stage_of("dbt_staging") == "dbt staging"
    assert bench_scale.stage_of("dbt_marts") == "dbt marts"
    assert bench_scale.stage_of("dbt_publish") == "dbt publish"


def test_stages_sum_durations_take_the_peak_rss_inside_them_and_the_last_line_is_exact() -> None:
    sampler = bench_scale.RssSampler()
    sampler.samples = [(0.5, 100 * 2**20), (1.5, 300 * 2**20), (2.5, 200 * 2**20), (9.0, 900 * 2**20)]
    instances = [
        dict(task_id="load", start=0.0, end=1.0, value={"rows_read": 10, "rows_loaded": 9, "ok": True}),
        dict(task_id="dbt_staging", start=1.0, end=3.0, value=None),
    ]
    table = bench_scale.stages(instances, sampler)
    assert set(table) == {"load", "dbt staging"}
    assert table["load"].seconds == 1.0 and table["load"].peak_rss == 100 * 2**20
    assert table["load"].rows == {"rows_read": 10, "rows_loaded": 9}, "booleans are not counts"
    assert table["dbt staging"].seconds == 2.0 and table["dbt staging"].peak_rss == 300 * 2**20

    text = bench_scale.render(table, {"staging": 1234}, wall=4.0, peak=sampler.peak())
    assert "rows in staging 1,234" in text
    # work 3 s of a 4 s wall: 25 % overhead; the peak of the whole run is 900 MB
    last = text.splitlines()[-1]
    assert last == "DAG wall 4.0 s, work 3.0 s, overhead 25.0 %, peak RSS 900 MB"
    assert re.fullmatch(r"DAG wall [\d.]+ s, work [\d.]+ s, overhead -?[\d.]+ %, peak RSS \d+ MB", last)


def test_stages_get_the_cpu_seconds_of_their_interval_and_the_load_line_comes_before_the_last() -> None:
    """CPU used so far by the tree 1.0 s at 0.5 s, 2.5 s at 1.5 s, 7.0 s at 2.5 s: load (0-1 s) 1.0, dbt (1-3 s) 6.0."""
    sampler = bench_scale.RssSampler()
    sampler.samples = [(0.5, 100 * 2**20), (1.5, 300 * 2**20), (2.5, 200 * 2**20)]
    sampler.cpu_samples = [(0.5, 1.0), (1.5, 2.5), (2.5, 7.0)]
    instances = [
        dict(task_id="load", start=0.0, end=1.0, value=None),
        dict(task_id="dbt_staging", start=1.0, end=3.0, value=None),
    ]
    table = bench_scale.stages(instances, sampler)
    assert table["load"].cpu_seconds == 1.0 and table["dbt staging"].cpu_seconds == 6.0

    lines = bench_scale.render(table, {}, wall=4.0, peak=sampler.peak(), load=[1.0, 2.0, 6.0]).splitlines()
    assert lines[-2].startswith("CPU 7.0 s in the stages; load average (1 min) during the run: min 1.00, mean 3.00")
    assert lines[-1] == "DAG wall 4.0 s, work 3.0 s, overhead 25.0 %, peak RSS 300 MB"


def test_a_task_still_running_when_the_run_stops_counts_until_the_stop(tmp_path) -> None:
    """Ctrl-C on a long run: the task that was running has no end nor duration yet; it counts until now. The
    tasks after a failed one are not in the table."""
    with sqlite3.connect(tmp_path / "airflow.db") as db:
        db.execute("create table task_instance (task_id, start_date, end_date, duration, state)")
        db.execute("create table xcom (task_id, key, value)")
        db.execute(
            "insert into task_instance values ('load', ?, ?, 60, 'success')",
            ("2026-12-06 10:00:00+00:00", "2026-12-06 10:01:00+00:00"),
        )
        db.execute(
            "insert into task_instance values ('check_raw', ?, null, null, 'running')", (datetime.now(UTC).isoformat(),)
        )
        db.execute(  # Airflow gives the tasks after a failed one a start date, but they never ran
            "insert into task_instance values ('recommend', ?, ?, 0, 'upstream_failed')",
            ("2026-12-06 10:02:00+00:00", "2026-12-06 10:02:00+00:00"),
        )
        db.execute("""insert into xcom values ('load', 'return_value', '{"rows_loaded": 9}')""")
    before = time.time()
    load, running = sorted(bench_scale.task_instances(tmp_path), key=lambda instance: instance["task_id"] != "load")
    assert load["end"] - load["start"] == 60.0 and load["value"] == {"rows_loaded": 9}
    assert running["state"] == "running" and before - 5 <= running["end"] <= time.time()
