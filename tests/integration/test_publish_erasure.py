"""An erasure against a run in flight, and the identity map published with the run (real Postgres).

The warehouse here is small: the identity map, one analytics and one ml table, and a build schema with the
recs tables :func:`recsys.serving.publish.check_build` requires, created from their dbt contracts (the
``contract_tables`` fixture). ``tests/integration/test_pipeline_e2e.py`` runs the real DAG, which ends with
the same swap.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import psycopg2
import pytest

from recsys.db import runs
from recsys.quality import erasure
from recsys.reporting.report import export_recommendations
from recsys.serving import publish

KEY = "k" * 40
RUN = "run_1"


def execute(url: str, statement: str, params: tuple = ()) -> None:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
    conn.close()


def rows(url: str, statement: str, params: tuple = ()) -> list[tuple]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        found = cur.fetchall()
    conn.close()
    return found


def build(url: str, run_id: str, users: list[str], contract_tables) -> None:
    """A build schema holding ``run_id``: one list row per user, one similar item, one cold-start row."""
    execute(url, "drop schema if exists recs_build cascade")
    contract_tables(url, *publish.RECS_TABLES, schema=publish.BUILD_SCHEMA)
    execute(
        url,
        """
        insert into recs_build.runs (run_id, is_published) values (%(run)s, true);
        insert into recs_build.similar_items (item_id, item_rank, similar_item_id, run_id)
            values ('i1', 1, 'i2', %(run)s);
        insert into recs_build.cold_start_recommendations (segment_key, item_rank, item_id, run_id)
            values ('all', 1, 'i1', %(run)s);
        insert into recs_build.user_recommendations (user_id, item_rank, item_id, score, model_name, run_id)
            select user_id, 1, 'i1', 1.0, 'popularity', %(run)s from unnest(%(users)s::text[]) as user_id;
        insert into recs_build.promotion_targets (promotion_id, user_id, target_rank, run_id)
            select 'p1', user_id, 1, %(run)s from unnest(%(users)s::text[]) as user_id;
        """,
        {"run": run_id, "users": users},
    )


@pytest.fixture
def warehouse(database, contract_tables):
    """Two shop accounts, A and B, each its own person; the run's tables hold both."""
    key_a, key_b = erasure.user_key("A", KEY), erasure.user_key("B", KEY)
    contract_tables(database, "user_id_map", "user_profiles")
    execute(
        database,
        """
        insert into identity.user_id_map (user_id, shop_user_id, account_user_id)
        values (%(a)s, 'A', %(a)s), (%(b)s, 'B', %(b)s);
        """
        + runs.ML_DDL,
        {"a": key_a, "b": key_b},
    )
    return database, key_a, key_b


def write_run_outputs(url: str, users: list[str], contract_tables) -> None:
    """What a run that read ``users`` before an erasure writes afterwards: profiles, model lists, the build."""
    execute(url, "insert into analytics.user_profiles (user_id) select unnest(%s::text[])", (users,))
    execute(
        url,
        "insert into ml.recommendations (run_id, user_id, item_rank, item_id, model_name, reason_code, generated_at)"
        " select %s, unnest(%s::text[]), 1, 'i1', 'popularity', 'popular', now()",
        (RUN, users),
    )
    build(url, RUN, users, contract_tables)


def test_rows_an_in_flight_run_writes_after_an_erasure_are_not_published(warehouse, contract_tables):
    url, key_a, key_b = warehouse
    started = datetime.now(UTC)
    with psycopg2.connect(url) as conn:
        erasure.erase_user(conn, "A", KEY)  # commits while the run is between reading users and writing
        write_run_outputs(url, [key_a, key_b], contract_tables)  # the run read A before the erasure
        result = publish.swap_recs(conn, RUN, erased_since=started)
    conn.close()
    assert result["rows_swept"] == 4  # profile, ml list, build list, promotion target
    for table in ("recs.user_recommendations", "recs.promotion_targets", "analytics.user_profiles"):
        assert rows(url, f"select user_id from {table}") == [(key_b,)], table
    assert rows(url, "select user_id from ml.recommendations") == [(key_b,)]
    assert rows(url, "select shop_user_id from identity.published_user_id_map") == [("B",)]


def test_a_publish_waits_for_an_erasure_in_flight_and_then_sweeps_it(warehouse, contract_tables):
    url, key_a, key_b = warehouse
    write_run_outputs(url, [key_a, key_b], contract_tables)
    eraser = psycopg2.connect(url)
    done: dict = {}
    try:
        with eraser.cursor() as cur:  # an erasure in flight: it holds its lock until it commits
            cur.execute("select pg_advisory_xact_lock(hashtext('recsys.quality.erasure'))")
        publisher = psycopg2.connect(url)
        thread = threading.Thread(target=lambda: done.update(publish.swap_recs(publisher, RUN)))
        thread.start()
        # the publish blocks on the erasure's lock: seen in pg_stat_activity, not guessed from timing
        waiting = []
        for _ in range(600):
            waiting = rows(
                url,
                "select pid from pg_stat_activity where wait_event_type = 'Lock' and wait_event = 'advisory'"
                " and datname = current_database()",
            )
            if waiting:
                break
            threading.Event().wait(0.05)
        assert waiting and not done
        erasure.erase_user(eraser, "A", KEY)  # same session, same lock: the erasure commits, the publish goes on
        thread.join(timeout=120)
        publisher.close()
    finally:
        eraser.close()
    assert done["run_id"] == RUN
    assert rows(url, "select user_id from recs.user_recommendations") == [(key_b,)]


def test_export_reads_the_map_published_with_the_run_not_the_one_a_later_run_rebuilt(
    warehouse, tmp_path, contract_tables
):
    url, key_a, key_b = warehouse
    build(url, RUN, [key_a, key_b], contract_tables)
    with psycopg2.connect(url) as conn:
        publish.swap_recs(conn, RUN)
    conn.close()
    # the next run's dbt rebuilds the map early: A is now stitched into another person, who has no list yet
    execute(url, "update identity.user_id_map set user_id = 'p_new' where shop_user_id = 'A'")
    out = tmp_path / "recs.csv"
    assert export_recommendations(url, out) == 2
    assert out.read_text().count("\nA,") == 1 and out.read_text().count("\nB,") == 1
