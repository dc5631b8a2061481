"""Daily incremental runs build the same facts and profiles as one full rebuild over the same deliveries.

A small clean shop is cut into three daily deliveries ``<day>/`` (the first holds everything up to its end, the
next two their own events; users and items are full snapshots every day), with three planted cases the
incremental filter must not lose or duplicate:

- a **late-arriving user**: one user's row is missing from the first two days' ``users.csv``, so their events
  and orders are excluded (``unknown_user``) until the third day's snapshot brings the user;
- a **re-delivered event**: one of the first day's views is delivered again on the second and on the third day,
  each time with another platform (the latest delivery wins in staging; the third day ranks its version with the
  two stored ones);
- **late order lines**: one completed order's lines are delivered on the third day, after the order;
- a **new item**: an item listed on the third day is in that day's items snapshot only (it moves every idf of
  the text interests);
- a **re-delivered batch**: the second day's batch is delivered again before the third day's, without its
  first event and with another one changed (a re-delivery replaces the whole batch);
- **social edges** all come with the first day: those made later stay excluded as after ``as_of`` until their
  day, those of a user not staged yet (the late-arriving one, one who signs up later) until the user is (the
  incremental base judges them again).

``daily`` loads and runs dbt (the transform models, ``dbt run --exclude tag:publish``) once per day, as the DAG
does; ``rebuilt`` loads the three days and runs dbt once. Their facts and profiles must be equal row for row,
leaving out only the wall-clock columns ``loaded_at`` and ``refreshed_at``; ``dbt run --full-refresh`` on the
incremental warehouse must rebuild the same tables.

``scheduled`` runs the model tasks' code on top, with ``RECSYS_FULL_RUN_DAYS`` naming the second day's weekday:
day 2 is a full run (search, champion, every list), day 3 an incremental one (champion carried, touched users
re-scored, the other lists carried). Its lists are compared with a full scoring of day 3 by the same refitted
champion. With every day a full run, three days publish the same tables as one run: ``test_reliability.py``'s
backfill test.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import subprocess
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg2
import pytest

from recsys.db.warehouse import REPO_ROOT, connect
from recsys.dev.local import BIN, environment
from recsys.dev.simulate import simulate
from recsys.ingest import load
from recsys.models.registry import build_model, load_model_config
from recsys.orchestration import challenger, publishing, schedule, training
from recsys.serving import placements, publish
from recsys.usecases import promotions

SHOP = {"users": 800, "items": 150, "days": 40, "seed": 11}
#: the incremental base events, facts and the profiles built on them (user_interest_tags per touched user)
TABLES = (
    "staging.base_shop__events",
    "staging.base_shop__social_edges",
    "analytics.fct_interactions",
    "analytics.fct_searches",
    "analytics.fct_orders",
    "analytics.fct_order_lines",
    "analytics.fct_reviews",
    "analytics.user_rfm",
    "analytics.user_lifecycle",
    "analytics.user_purchase_behaviour",
    "analytics.user_interest_tags",
    "analytics.text_term_idf",
    "analytics.user_text_interests",
    "analytics.user_profiles",
)
WALL_CLOCK_COLUMNS = {"loaded_at", "refreshed_at", "fitted_at"}
TEXT_INTERESTS = (
    "select user_id, term, items, raw_weight, weight, term_rank, last_interaction_at"
    " from analytics.user_text_interests order by user_id, term_rank"
)


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *rows])


def split_with_late_rows(shop: Path, out: Path, days: list[date]) -> dict[str, str]:
    """Write ``shop`` as three daily deliveries with the planted cases of the module docstring; return them."""
    events_header, events = read_csv(shop / "events.csv")
    at, user, kind, platform = (events_header.index(name) for name in ("event_at", "user_id", "event_type", "platform"))
    first, second = days[0].isoformat(), days[1].isoformat()
    day_events = {
        days[0]: [row for row in events if row[at][:10] <= first],
        days[1]: [row for row in events if row[at][:10] == second],
        days[2]: [row for row in events if row[at][:10] > second],
    }
    late_user = sorted({row[user] for row in day_events[days[1]]})[0]
    redelivered = next(row for row in day_events[days[0]] if row[kind] == "view" and row[user] != late_user)
    new_platform = "app" if redelivered[platform] != "app" else "web"
    # delivered again on the second day too: the third day re-ranks two stored versions with its own
    middle_platform = next(
        name for name in ("mini_program", "web", "app") if name not in (redelivered[platform], new_platform)
    )
    day_events[days[1]].append([*redelivered[:platform], middle_platform, *redelivered[platform + 1 :]])
    day_events[days[2]].append([*redelivered[:platform], new_platform, *redelivered[platform + 1 :]])
    orders_header, orders = read_csv(shop / "orders.csv")
    late_order = next(
        row[0] for row in orders if row[orders_header.index("status")] == "completed" and row[1] != late_user
    )
    lines_header, lines = read_csv(shop / "order_lines.csv")
    users_header, users = read_csv(shop / "users.csv")
    items_header, items = read_csv(shop / "items.csv")
    new_item = dict(zip(items_header, items[0], strict=True)) | {
        "item_id": "I99999",
        "name": "Quillmere Lantern 77",
        "created_at": f"{days[2].isoformat()}T08:00:00Z",
    }
    new_item = [new_item[column] for column in items_header]
    for index, day in enumerate(days):
        folder = out / day.isoformat()
        folder.mkdir(parents=True)
        shutil.copy(shop / "manifest.json", folder)
        for path in shop.glob("*.csv"):
            if path.name not in ("events.csv", "users.csv", "order_lines.csv", "items.csv"):
                header, rows = read_csv(path)
                write_csv(folder / path.name, header, rows if index == 0 else [])
        write_csv(folder / "items.csv", items_header, items + ([new_item] if index == 2 else []))
        write_csv(folder / "events.csv", events_header, day_events[day])
        write_csv(folder / "users.csv", users_header, [row for row in users if index == 2 or row[0] != late_user])
        late = [row for row in lines if row[0] == late_order]
        kept = [row for row in lines if row[0] != late_order]
        write_csv(folder / "order_lines.csv", lines_header, {0: kept, 1: [], 2: late}[index])
    kept, changed, *rest = day_events[days[1]][1:]  # the first event is left out of the second delivery
    changed_platform = "app" if changed[platform] != "app" else "web"
    again = [kept, [*changed[:platform], changed_platform, *changed[platform + 1 :]], *rest]
    write_csv(out.parent / f"{out.name}-again.csv", events_header, again)
    event_id = events_header.index("event_id")
    return {
        "late_user": late_user,
        "redelivered_event": redelivered[event_id],
        "redelivered_platform": new_platform,
        "dropped_event": day_events[days[1]][0][event_id],
        "changed_event": changed[event_id],
        "changed_platform": changed_platform,
        "late_order": late_order,
        "late_order_lines": str(sum(row[0] == late_order for row in lines)),
    }


def deliver(url: str, folder: Path, days: list[date], day: date) -> None:
    """Load ``day``'s batch; before the third day's, the second day's again (its events ``<folder>-again.csv``)."""
    with connect(url) as conn:
        if day == days[2]:
            events = folder / days[1].isoformat() / "events.csv"
            first = events.read_bytes()
            shutil.copy(folder.parent / f"{folder.name}-again.csv", events)
            try:
                load.load_landing(conn, folder, days[1].isoformat())
            finally:
                events.write_bytes(first)
        load.load_landing(conn, folder, day.isoformat())


@pytest.fixture(scope="module")
def deliveries(tmp_path_factory):
    shop = tmp_path_factory.mktemp("incremental_shop")
    simulate(shop, dirty=False, **SHOP)
    end = date.fromisoformat(json.loads((shop / "manifest.json").read_text())["end_date"])
    days = [end - timedelta(days=2), end - timedelta(days=1), end]
    daily = tmp_path_factory.mktemp("incremental_daily")
    return daily, days, split_with_late_rows(shop, daily, days)


def dbt_run(env: dict[str, str], day: date, *extra: str) -> None:
    """dbt's transform models for the daily interval holding ``day``, as the DAG's dbt tasks run them."""
    as_of = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC).isoformat()
    subprocess.run(
        [str(BIN / "dbt"), "run", "--exclude", "tag:publish", *extra]
        + ["--project-dir", str(REPO_ROOT / "dbt_project"), "--target-path", env["TARGET"]],
        env=env | {"RECSYS_AS_OF": as_of},
        check=True,
        capture_output=True,
    )


def query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql, params or None)
        return cur.fetchall()


def checksums(url: str) -> dict[str, tuple[int, str]]:
    """Rows and md5 of the ordered rows of each of :data:`TABLES`, without :data:`WALL_CLOCK_COLUMNS`."""
    sums = {}
    for table in TABLES:
        schema, name = table.split(".")
        columns = query(
            url,
            "select column_name from information_schema.columns where table_schema = %s and table_name = %s"
            " order by ordinal_position",
            (schema, name),
        )
        row = ", ".join(f'"{column}"' for (column,) in columns if column not in WALL_CLOCK_COLUMNS)
        sums[table] = query(
            url,
            f"select count(*), md5(coalesce(string_agg(line, E'\\n' order by line), ''))"
            f" from (select row({row})::text as line from {table}) as lines",
        )[0]
    return sums


def warehouse(fresh_database, tmp_path_factory) -> tuple[str, dict[str, str]]:
    url = fresh_database()
    env = environment(url, airflow_home=tmp_path_factory.mktemp("airflow"))
    env["TARGET"] = str(tmp_path_factory.mktemp("dbt_target"))
    return url, env


@pytest.fixture(scope="module")
def daily(fresh_database, deliveries, tmp_path_factory):
    """One load and one incremental dbt run per day; the URL, the env and the users each day recomputed."""
    folder, days, _ = deliveries
    url, env = warehouse(fresh_database, tmp_path_factory)
    for day in days:
        deliver(url, folder, days, day)
        dbt_run(env, day)
    return url, env, days


@pytest.fixture(scope="module")
def rebuilt(fresh_database, deliveries, tmp_path_factory):
    """The three days loaded, then one dbt run for the last day: every incremental model built in one go."""
    folder, days, _ = deliveries
    url, env = warehouse(fresh_database, tmp_path_factory)
    for day in days:
        deliver(url, folder, days, day)
    dbt_run(env, days[-1])
    return url


def test_three_incremental_days_equal_one_full_rebuild(daily, rebuilt, deliveries):
    url = daily[0]
    planted = deliveries[2]
    incremental = checksums(url)
    assert all(rows for rows, _ in incremental.values()), incremental
    assert incremental == checksums(rebuilt)
    # the planted cases are there once, as a full rebuild has them
    (late_user,) = query(
        url, "select user_id from identity.user_id_map where shop_user_id = %s", (planted["late_user"],)
    )
    assert query(url, "select count(*) > 0 from analytics.fct_interactions where user_id = %s", late_user) == [(True,)]
    assert query(
        url, "select platform from analytics.fct_interactions where event_id = %s", (planted["redelivered_event"],)
    ) == [(planted["redelivered_platform"],)]
    versions = (
        "select count(*), count(*) filter (where not is_duplicate) from staging.base_shop__events where event_id = %s"
    )
    assert query(url, versions, (planted["redelivered_event"],)) == [(3, 1)]
    platforms = "select platform from {} where event_id = %s"
    assert query(url, platforms.format("staging.base_shop__events"), (planted["dropped_event"],)) == []
    assert query(url, platforms.format("analytics.fct_interactions"), (planted["changed_event"],)) == [
        (planted["changed_platform"],)
    ]
    assert query(
        url,
        "select orders.line_count, count(*) from analytics.fct_orders as orders"
        " inner join analytics.fct_order_lines as lines on orders.order_id = lines.order_id"
        " where orders.order_id = %s group by orders.line_count",
        (planted["late_order"],),
    ) == [(int(planted["late_order_lines"]),) * 2]


def test_the_last_day_recomputes_only_the_users_it_touched(daily):
    """user_interest_tags recomputes, on day 3, exactly the users whose interactions day 3 inserted or moved."""
    url = daily[0]
    ((last,),) = query(url, "select max(refreshed_at) from analytics.fct_interactions")
    recomputed = {
        row[0]
        for row in query(url, "select user_id from analytics.user_interest_tags where refreshed_at = %s", (last,))
    }
    touched = {
        row[0] for row in query(url, "select user_id from analytics.fct_interactions where refreshed_at = %s", (last,))
    }
    tagged = {row[0] for row in query(url, "select user_id from analytics.user_interest_tags")}
    assert recomputed and recomputed == touched & tagged
    assert len(recomputed) < len(tagged) / 2


def test_a_run_that_writes_few_rows_analyzes_only_the_tables_it_rebuilt(daily):
    """dbt analyzes every table it rebuilds, and an incremental table only when it created it or wrote more than a
    tenth of its rows: the last day's dbt run once more writes (almost) no fact, so no incremental table is analyzed."""
    url, env, days = daily
    analyzed_since = "select relname from pg_stat_user_tables where last_analyze > %s"
    ((started,),) = query(url, "select now()")
    assert {"fct_interactions", "base_shop__events"} <= {
        table for (table,) in query(url, analyzed_since, ("-infinity",))
    }
    dbt_run(env, days[-1])
    analyzed = {table for (table,) in query(url, analyzed_since, (started,))}
    assert {"dim_users", "user_profiles", "base_shop__users"} <= analyzed
    assert not analyzed & {"base_shop__events", "fct_interactions", "fct_orders", "user_interest_tags"}, analyzed


def test_full_refresh_rebuilds_the_same_tables(daily):
    url, env, days = daily
    before = checksums(url)
    dbt_run(env, days[-1], "--full-refresh")
    assert checksums(url) == before
    assert query(url, "select count(distinct refreshed_at) from analytics.fct_interactions") == [(1,)]


def test_a_text_interests_table_from_before_it_was_incremental_is_upgraded(daily):
    """A user_text_interests built before the model was incremental (no last_interaction_at, no refreshed_at)
    gets the columns on the next run, which recomputes every user: the same rows, no full refresh needed."""
    url, env, days = daily
    before = query(url, TEXT_INTERESTS)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "alter table analytics.user_text_interests drop column last_interaction_at, drop column refreshed_at"
        )
    dbt_run(env, days[-1], "--select", "user_text_interests")
    assert query(url, TEXT_INTERESTS) == before
    assert query(url, "select count(*), count(distinct refreshed_at) from analytics.user_text_interests") == [
        (len(before), 1)
    ]


def test_a_social_edges_table_from_before_it_was_incremental_is_rebuilt_in_place(daily):
    """A base_shop__social_edges built as a table (no load_seq, no indexes) is rebuilt by the next run: the same
    rows, then the indexes the incremental runs look edges up by."""
    url, env, days = daily
    rows = "select edge_id, from_user_id, exclusion_reason, is_duplicate, load_seq from staging.base_shop__social_edges"
    before = sorted(query(url, rows))
    assert any(row[2] is None for row in before)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "select indexrelid::regclass::text from pg_index"
            " where indrelid = 'staging.base_shop__social_edges'::regclass and indpred is null"
        )
        for (index,) in cur.fetchall():
            cur.execute(f"drop index {index}")
        # the staging view reads every column: dropped with it, and built again below
        cur.execute("alter table staging.base_shop__social_edges drop column load_seq cascade")
    dbt_run(env, days[-1], "--select", "base_shop__social_edges", "stg_shop__social_edges")
    assert sorted(query(url, rows)) == before
    indexed = query(
        url,
        "select array(select attname from unnest(indkey::int2[]) with ordinality as keys (attnum, position)"
        " inner join pg_attribute on attrelid = indrelid and pg_attribute.attnum = keys.attnum order by position)::text"
        " from pg_index where indrelid = 'staging.base_shop__social_edges'::regclass and indpred is null",
    )
    assert sorted(indexed) == [("{batch_id,loaded_at}",), ("{edge_id}",)]


def interval(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, datetime.min.time(), UTC)
    return start, start + timedelta(days=1)


@pytest.fixture(scope="module")
def scheduled(fresh_database, deliveries, tmp_path_factory):
    """Day 1 loaded; day 2 a full run; day 3 an incremental run (``run_3``), then a full scoring (``check``)."""
    folder, days, _ = deliveries
    url, env = warehouse(fresh_database, tmp_path_factory)
    env["RECSYS_FULL_RUN_DAYS"] = schedule.WEEKDAYS[days[1].weekday()]  # dbt refits the text idf on day 2 only
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECSYS_FULL_RUN_DAYS", env["RECSYS_FULL_RUN_DAYS"])
        with connect(url) as conn:
            load.load_landing(conn, folder, days[0].isoformat())
        modes = []
        for day, run_id in [(days[1], "run_2"), (days[2], "run_3")]:
            with connect(url) as conn:
                load.load_landing(conn, folder, day.isoformat())
            dbt_run(env, day)
            start, end = interval(day)
            with connect(url) as conn:
                modes.append(schedule.is_incremental(conn, start, end))
                if modes[-1]:
                    schedule.carry_champion(conn, run_id, start, end)
                else:
                    training.train_and_evaluate(conn, run_id, start, end)
            with connect(url) as conn:
                publishing.generate_recommendations(conn, run_id, end, rescore=schedule.rescore_for(conn, run_id))
                # as the task does: the held-out evaluation on full runs only
                promotions.target_promotions(conn, run_id, end, carried_from=schedule.carried_from(conn, run_id))
        with connect(url) as conn:
            rescore = schedule.rescore_for(conn, "run_3")
            schedule.carry_champion(conn, "check", *interval(days[2]))
            publishing.generate_recommendations(conn, "check", interval(days[2])[1])
            promotions.target_promotions(conn, "check", interval(days[2])[1])
    return url, modes, rescore, env, days


LIST_COLUMNS = "user_id, item_rank, item_id, score, model_name, reason_code, reason_text, generated_at"


def lists(url: str, run_id: str, touched: set[str], of_touched: bool) -> set[tuple]:
    """The run's list rows of the touched users, or of the other users of ``dim_users`` now."""
    rows = query(
        url,
        f"select {LIST_COLUMNS} from ml.run_recommendations where run_id = %s"
        " and user_id in (select user_id from analytics.dim_users)",
        (run_id,),
    )
    return {row for row in rows if (row[0] in touched) == of_touched}


def test_an_incremental_day_rescores_the_touched_users_and_carries_the_rest(scheduled):
    """Day 3 carries day 2's champion; the touched users' lists are those a full scoring by the same refitted
    champion gives (every column), the other users of day 3's dim_users keep day 2's lists (a user no longer
    there, e.g. an account joined to another person, has no list), and every user has a list."""
    url, modes, rescore, _, _ = scheduled
    assert modes == [False, True]
    runs = dict(query(url, "select run_id, champion_model from ml.runs"))
    assert runs["run_3"] == runs["run_2"] == runs["check"]
    touched = set(rescore.user_ids)
    (users,) = query(url, "select count(*) from analytics.dim_users")[0]
    assert rescore.previous_run_id == "run_2"
    assert 0 < len(touched) < users / 2
    assert lists(url, "run_3", touched, True) == lists(url, "check", touched, True)
    assert lists(url, "run_3", touched, False) == lists(url, "run_2", touched, False)
    listed = query(url, "select run_id, count(distinct user_id) from ml.run_recommendations group by 1 order by 1")
    assert [row for row in listed if row[0] != "run_2"] == [("check", users), ("run_3", users)]
    # the carried lists are not copied: day 3's own rows are the touched users' only
    generated = {row[0] for row in query(url, "select distinct user_id from ml.recommendations where run_id = 'run_3'")}
    assert generated <= touched


def test_an_incremental_day_targets_promotions_without_evaluating_or_refitting(scheduled, deliveries):
    """Day 3 writes the promotion targets of day 2's propensity model (stored by day 2, a full run), without the
    held-out evaluation and without a model of its own."""
    from recsys.db import runs

    url = scheduled[0]
    evaluated = query(url, "select distinct run_id from ml.model_evaluations where variant = 'promotion'")
    assert sorted(evaluated) == [("check",), ("run_2",)]
    stored = query(url, "select run_id from ml.fitted_learners where model_key = %s", (promotions.LEARNER_KEY,))
    assert sorted(stored) == [("check",), ("run_2",)]
    end = pd.Timestamp(interval(deliveries[1][2])[1])
    with connect(url) as conn:
        model = runs.read_learners(conn, "run_2")[promotions.LEARNER_KEY]
        expected, _ = promotions.targets(conn, end, promotions.settings(load_model_config()), model)
    columns = ["promotion_id", "user_id", "target_rank", "propensity"]
    written = sorted(query(url, f"select {', '.join(columns)} from ml.promotion_targets where run_id = 'run_3'"))
    expected = sorted(expected[columns].itertuples(index=False, name=None))
    assert written and [row[:3] for row in written] == [row[:3] for row in expected]
    assert [row[3] for row in written] == pytest.approx([row[3] for row in expected], rel=1e-6)  # stored as real


def publish_run(url: str, env: dict[str, str], day: date, run_id: str, reader_seconds: float = 0.0) -> dict:
    """The DAG's publish of ``run_id``: the ``publish`` dbt group built and tested in the build schema, the swap.

    With ``reader_seconds``, a reader holds ``recs.similar_items`` that long from just before the swap.
    """
    settings = {
        "RECSYS_AS_OF": interval(day)[1].isoformat(),
        "RECSYS_RUN_ID": run_id,
        "RECSYS_RECS_SCHEMA": publish.BUILD_SCHEMA,
    }
    subprocess.run(
        [str(BIN / "dbt"), "build", "--select", "tag:publish", "--project-dir", str(REPO_ROOT / "dbt_project")]
        + ["--target-path", env["TARGET"]],
        env=env | settings,
        check=True,
        capture_output=True,
    )
    reader = psycopg2.connect(url)
    try:
        if reader_seconds:
            reader.cursor().execute("select count(*) from recs.similar_items")  # its lock lasts until the rollback
            threading.Timer(reader_seconds, reader.rollback).start()
        with connect(url) as conn:
            return publish.swap_recs(conn, run_id)
    finally:
        reader.close()


PUBLISHED_COLUMNS = "user_id, placement, item_rank, item_id, score, model_name, reason_code, reason_text, generated_at"


def test_an_incremental_day_publishes_by_writing_its_touched_users_lists(scheduled, caplog):
    """Published after day 2, day 3 rewrites in the published table only the rows of the users it scored: the
    other users' rows stay, their ``run_id`` day 2's, which generated them. Published with nothing before, it
    copies its carried lists from ``ml``. Both publish every list of day 3, as ``ml.run_recommendations`` reads it;
    the second while a reader holds ``recs`` for a second: the swap retries its locks and keeps what it wrote."""
    url, _, rescore, env, days = scheduled
    expected = query(
        url,
        f"select {PUBLISHED_COLUMNS} from ml.run_recommendations where run_id = 'run_3'"
        " and user_id in (select user_id from analytics.dim_users) order by 1, 2, 3",
    )
    published = f"select {PUBLISHED_COLUMNS} from recs.user_recommendations order by 1, 2, 3"
    touched = (list(rescore.user_ids),)
    count = "select count(*) from {} where {} user_id = any(%s)"
    generated, carried = (
        query(url, count.format("ml.run_recommendations", f"run_id = 'run_3' and {negation}"), touched)[0][0]
        for negation in ("", "not")
    )

    first = publish_run(url, env, days[2], "run_3")
    assert first["lists_copied"] == carried and "lists_dropped" not in first
    assert query(url, published) == expected

    assert "lists_copied" not in publish_run(url, env, days[1], "run_2")  # a full run: dbt built every list
    (previous_rows,) = query(url, count.format("recs.user_recommendations", ""), touched)[0]
    with caplog.at_level(logging.INFO, logger=publish.__name__):
        second = publish_run(url, env, days[2], "run_3", reader_seconds=1.0)
    assert "recs is busy" in caplog.text
    assert second["lists_copied"] == 0
    assert second["lists_dropped"] == previous_rows
    assert second["user_recommendations"] == generated + carried == len(expected)
    assert query(url, published) == expected
    by_run = query(url, "select run_id, count(*) from recs.user_recommendations group by 1 order by 1")
    assert by_run == [("run_2", carried), ("run_3", generated)]


def test_an_incremental_day_scores_the_challengers_lists_of_the_touched_users(scheduled):
    """An A/B test's challenger on day 3 scores the lists of the users the champion re-scores and of those whose
    day-2 challenger list holds an item now out of stock, as a full scoring does; every other user keeps their
    day-2 challenger list."""
    url, _, rescore, _, days = scheduled
    end = interval(days[2])[1]
    with connect(url) as conn:
        challenger.recommend_challenger(conn, "run_2", interval(days[1])[1], "popularity")
        result = challenger.recommend_challenger(conn, "run_3", end, "popularity")
        config = load_model_config()
        config["models"]["popularity"]["params"] = challenger.selected_params(conn, "run_3", "popularity")
        publishing.generate_recommendations(
            conn, "reference", end, model_name="popularity", config=config, shelves=(placements.FOR_YOU,)
        )
    stale = query(
        url,
        "select distinct lists.user_id from ml.challenger_recommendations as lists"
        " left join analytics.dim_items as items on lists.item_id = items.item_id"
        " where lists.run_id = 'run_2' and not coalesce(items.is_in_stock, false)",
    )
    scored = set(rescore.user_ids) | {row[0] for row in stale}

    def by_user(table: str, run_id: str) -> dict[str, list[tuple]]:
        rows = query(
            url,
            f"select user_id, item_rank, item_id, score, reason_code, reason_text from {table}"
            " where run_id = %s order by user_id, item_rank",
            (run_id,),
        )
        listed: dict[str, list[tuple]] = {}
        for user_id, *row in rows:
            listed.setdefault(user_id, []).append(tuple(row))
        return listed

    day3, day2 = (by_user("ml.challenger_recommendations", run) for run in ("run_3", "run_2"))
    full = by_user("ml.recommendations", "reference")  # for_you lists only
    assert result["challenger_recommendations"] == sum(map(len, day3.values()))
    assert 0 < len(scored & day3.keys()) < len(day3) / 2
    assert day3.keys() == full.keys()
    assert {user: rows for user, rows in day3.items() if user in scored} == {
        user: rows for user, rows in full.items() if user in scored
    }
    assert {user: rows for user, rows in day3.items() if user not in scored} == {
        user: day2[user] for user in day3 if user not in scored
    }


def test_lists_carried_twice_point_at_the_run_that_generated_them(database):
    """Day 2 scores u1 (active since day 1 started) and carries u2 and u3 from day 1; day 3 scores u2 and carries
    u1 (day 2's list) and u3 (still day 1's rows, never copied); u4, gone from dim_users, is neither."""
    from recsys.db import runs

    start = datetime(2026, 11, 1, tzinfo=UTC)
    with psycopg2.connect(database) as conn:
        runs.ensure_schema(conn)
        with conn.cursor() as cur:
            cur.execute(
                "create schema analytics;"
                " create table analytics.dim_users (user_id text primary key, is_personalization_allowed boolean);"
                " insert into analytics.dim_users values ('u1', true), ('u2', true), ('u3', true);"
                " create table analytics.dim_items (item_id text primary key, is_in_stock boolean);"
                " create table analytics.fct_interactions (user_id text, refreshed_at timestamptz);"
                " create table analytics.fct_orders (user_id text, refreshed_at timestamptz)"
            )

            def generate(run_id: str, users: list[str]) -> None:
                cur.executemany(
                    "insert into analytics.dim_items values (%s, true)", [(f"{run_id}-{u}",) for u in users]
                )
                cur.executemany(
                    "insert into ml.recommendations (run_id, user_id, item_rank, item_id, model_name, reason_code,"
                    " generated_at) values (%s, %s, 1, %s, 'als', 'matrix_factorization', now())",
                    [(run_id, user, f"{run_id}-{user}") for user in users],
                )

            def next_day(run_id: str, previous: str, day: int, active: str) -> np.ndarray:
                started = start + timedelta(days=day - 1)
                cur.execute(
                    "insert into analytics.fct_interactions values (%s, %s)", (active, started + timedelta(hours=1))
                )
                rescore = schedule.lists_to_rescore(conn, {"run_id": previous, "started_at": started})
                assert schedule.carry_lists(conn, run_id, rescore.carried) == 2
                return rescore.user_ids

            generate("day1", ["u1", "u2", "u3", "u4"])
            assert next_day("day2", "day1", 1, "u1").tolist() == ["u1"]
            generate("day2", ["u1"])
            assert next_day("day3", "day2", 2, "u2").tolist() == ["u2"]
            generate("day3", ["u2"])
            cur.execute("select user_id, list_run_id from ml.carried_lists where run_id = 'day3' order by 1")
            assert cur.fetchall() == [("u1", "day2"), ("u3", "day1")]
            cur.execute("select user_id, item_id from ml.run_recommendations where run_id = 'day3' order by 1")
            assert cur.fetchall() == [("u1", "day2-u1"), ("u2", "day3-u2"), ("u3", "day1-u3")]
            cur.execute("select count(*) from ml.recommendations where run_id = 'day3'")
            assert cur.fetchone() == (1,)


def test_text_interests_keep_the_full_runs_idf_and_recompute_only_the_touched_users(scheduled):
    """Day 3, not a full-run day, keeps day 2's idf and recomputes the text interests of the users it touched only,
    as a rebuild of the table with that idf gives them; a run of day 3 as a full-run day refits the idf and
    recomputes every user, as a rebuild of both gives them. (Runs last: it rebuilds the two tables.)"""
    url, _, _, env, days = scheduled
    day_3 = interval(days[2])[1]
    assert query(url, "select distinct fitted_as_of from analytics.text_term_idf") == [(interval(days[1])[1],)]
    ((last,),) = query(url, "select max(refreshed_at) from analytics.fct_interactions")
    recomputed, touched = (
        {row[0] for row in query(url, f"select user_id from analytics.{table} where refreshed_at = %s", (last,))}
        for table in ("user_text_interests", "fct_interactions")
    )
    profiled = {row[0] for row in query(url, "select user_id from analytics.user_text_interests")}
    assert recomputed and recomputed == touched & profiled
    assert len(recomputed) < len(profiled) / 2
    kept_idf = query(url, TEXT_INTERESTS)
    dbt_run(env, days[2], "--select", "user_text_interests", "--full-refresh")
    assert query(url, TEXT_INTERESTS) == kept_idf

    dbt_run(env | {"RECSYS_FULL_RUN_DAYS": "all"}, days[2], "--select", "text_term_idf+")
    assert query(url, "select distinct fitted_as_of from analytics.text_term_idf") == [(day_3,)]
    assert query(url, "select count(distinct refreshed_at) from analytics.user_text_interests") == [(1,)]
    refitted = query(url, TEXT_INTERESTS)
    assert refitted != kept_idf  # the item listed on day 3 moved the idf
    dbt_run(env, days[2], "--select", "text_term_idf+", "--full-refresh")
    assert query(url, TEXT_INTERESTS) == refitted


def test_an_incremental_day_starts_als_from_the_full_runs_item_factors(scheduled, caplog):
    """A full run whose model is ALS stores its item factors; the incremental day carried from it starts its
    ALS from them (3 sweeps, not 15), and a full run's ALS starts from scratch."""
    from recsys.db import runs

    url, _, _, _, days = scheduled
    full_end, day_end = interval(days[1])[1], interval(days[2])[1]
    caplog.set_level(logging.INFO, logger="recsys.models.factorization")
    with connect(url) as conn:
        publishing.generate_recommendations(conn, "als_full", full_end, model_name="als", shelves=["for_you"])
    stored = query(url, "select model_key from ml.fitted_learners where run_id = 'als_full'")
    assert [key for (key,) in stored if key.startswith("als_item_factors ")] == [
        build_model("als", load_model_config()["models"]["als"]["params"], load_model_config()).warm_start_key()
    ]
    assert "iterations from earlier item factors" not in caplog.text
    with connect(url) as conn:
        runs.upsert_run(
            conn, "als_day", data_cutoff_at=day_end, status="evaluated", champion_reason=schedule.CARRIED + "als_full"
        )
        conn.commit()
        publishing.generate_recommendations(conn, "als_day", day_end, model_name="als", shelves=["for_you"])
    assert "15 iterations" in caplog.text and "3 iterations from earlier item factors" in caplog.text
