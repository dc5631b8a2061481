"""Impressions, attribution, online evaluation and A/B tests of the serving API, against real Postgres and dbt.

The closed loop: a shop of 80 shoppers is loaded and staged by dbt; a planted run publishes the champion's
lists (items c1..c5 for everyone) and the challenger ``item_knn``'s lists (k1..k5) for its arm. The API
serves half of the shoppers each arm (a hash of the test's name and the shopper); simulated shoppers like
only the k items, so they click the challenger's lists far more and buy only from them. Their clicks and
purchases go back through the API, are drained and loaded with the impressions, dbt attributes them
(``fct_impressions``), the online evaluation counts them, and the z-test finds the challenger better.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
from fastapi.testclient import TestClient

from recsys import cli
from recsys.api import events, impressions
from recsys.api.app import Settings, create_app
from recsys.api.experiments import Experiment
from recsys.api.store import Store
from recsys.db import keystore, runs
from recsys.db.warehouse import REPO_ROOT, connect
from recsys.dev.local import BIN, environment
from recsys.dev.shoppers import Shoppers
from recsys.evaluation.online import evaluate_online
from recsys.ingest import load
from recsys.quality import erasure
from recsys.reporting.online import arm_comparison
from recsys.serving import publish

TOKEN = "test-token-not-a-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RUN = "run_20261101T000000"
SHOPPERS = [f"U{n:02d}" for n in range(80)]
EXPERIMENT = Experiment("home-ab-1", challenger="item_knn", challenger_share=0.5)


def dbt(env: dict[str, str], *args: str) -> None:
    result = subprocess.run(
        [str(BIN / "dbt"), *args, "--project-dir", str(REPO_ROOT / "dbt_project"), "--target-path", env["TARGET"]],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-5000:]


def rows(url: str, query: str, params: tuple = ()) -> list[tuple]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        found = cur.fetchall()
    conn.close()
    return found


def write_shop(directory) -> None:
    day = directory / "2026-11-01"
    day.mkdir(parents=True)
    users = "\n".join(f"{user},2026-01-01T00:00:00Z" for user in SHOPPERS)
    (day / "users.csv").write_text(f"user_id,signup_at\n{users}\n")
    items = "\n".join(f"{kind}{n},10,5" for kind in "ck" for n in range(1, 6))
    (day / "items.csv").write_text(f"item_id,price,stock_quantity\n{items}\n")
    (day / "events.csv").write_text("user_id,item_id,event_type,event_at\nU00,c1,view,2026-10-30T10:00:00Z\n")


def publish_planted_run(url: str) -> None:
    """Champion (popularity) lists c1..c5 and challenger (item_knn) lists k1..k5 for every shopper."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            """
            insert into recs_build.runs (run_id, is_published, champion_model, repeat_purchase_categories)
                values (%(run)s, true, 'popularity', '');
            insert into recs_build.user_recommendations (user_id, placement, item_rank, item_id, score, model_name,
                reason_code, reason_text, run_id)
                select map.user_id, 'for_you', rank, 'c' || rank, 1.0 / rank, 'popularity', 'popular', 'Popular',
                    %(run)s
                from identity.user_id_map as map cross join generate_series(1, 5) as rank;
            insert into recs_build.similar_items (item_id, item_rank, similar_item_id, score, run_id)
                values ('c1', 1, 'c2', 0.5, %(run)s);
            insert into recs_build.cold_start_recommendations (segment_key, item_rank, item_id, score, run_id)
                values ('all', 1, 'c1', 0.8, %(run)s);
            insert into ml.challenger_recommendations (run_id, model_name, user_id, item_rank, item_id, score,
                reason_code, reason_text)
                select %(run)s, 'item_knn', map.user_id, rank, 'k' || rank, 1.0 / rank, 'similar', 'Similar'
                from identity.user_id_map as map cross join generate_series(1, 5) as rank;
            """,
            {"run": RUN},
        )
    conn.close()
    with psycopg2.connect(url) as conn:
        publish.swap_recs(conn, RUN)
    conn.close()


@pytest.fixture
def staged_shop(database, contract_tables, tmp_path):
    """The shop loaded and its identity map built by dbt, the planted run published; returns (url, env, shop)."""
    shop = tmp_path / "shop"
    write_shop(shop)
    env = environment(database, airflow_home=tmp_path / "airflow") | {"TARGET": str(tmp_path / "dbt_target")}
    with connect(database) as conn:
        load.load_landing(conn, shop, "2026-11-01")
        runs.ensure_schema(conn)
    as_of = json.dumps({"as_of": datetime.now(UTC).isoformat()})
    dbt(env, "run", "--select", "+user_id_map", "+dim_items", "--vars", as_of)
    contract_tables(database, *publish.RECS_TABLES, schema=publish.BUILD_SCHEMA)
    publish_planted_run(database)
    return database, env, shop


def test_the_closed_loop_serve_log_click_land_evaluate(staged_shop, tmp_path):
    url, env, shop = staged_shop
    store = Store(url)
    settings = Settings(TOKEN, tmp_path / "spool", requests_per_second=1e6, burst=10**6, experiment=EXPERIMENT)
    shoppers = Shoppers(SHOPPERS, liked={f"k{n}" for n in range(1, 6)}, seed=3)
    tally = shoppers.play(TestClient(create_app(store, settings)), AUTH, rounds=3, n=5)
    store.close()

    logged = impressions.drain(tmp_path / "spool", shop)
    with connect(url) as conn:
        events.drain(tmp_path / "spool", shop, conn)
    (day,) = logged
    shown = sum(tally[user, "impressions"] for user in SHOPPERS)  # a list loses what its shopper just bought
    assert logged[day] == {"logged": shown, "landed": shown}
    with connect(url) as conn:
        audits = {row["table_name"]: row for row in load.load_landing(conn, shop, f"api-{day}")}
    assert (audits["impressions"]["rows_read"], audits["impressions"]["rows_loaded"]) == (shown, shown)
    as_of = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    dbt(env, "run", "--select", "+fct_impressions", "--vars", json.dumps({"as_of": as_of}))
    # their data tests, fct_impressions' unit test of the attribution window and last touch, and the staging
    # policy's unit test (a click with a request_id stays a click)
    selected = ["stg_shop__impressions", "fct_impressions", "base_shop__events,test_type:unit"]
    dbt(env, "test", "--select", *selected, "--vars", json.dumps({"as_of": as_of}))

    # every shopper is in the arm the hash says, with what the simulator saw, clicked and bought
    arm_of = {
        shop_id: EXPERIMENT.arm(user_id)
        for user_id, shop_id in rows(url, "select user_id, shop_user_id from identity.user_id_map")
    }
    expected = {
        arm: tuple(
            sum(tally[user, metric] for user in SHOPPERS if arm_of[user] == arm)
            for metric in ("impressions", "clicks", "purchases")
        )
        for arm in ("champion", "challenger")
    }
    found = rows(
        url,
        "select arm, model_name, count(*), count(*) filter (where is_clicked), count(*) filter (where is_purchased),"
        " min(challenger_share), max(challenger_share), count(distinct run_id)"
        " from analytics.fct_impressions group by arm, model_name",
    )
    assert {row[0]: row[2:5] for row in found} == expected
    assert {(row[0], row[1]) for row in found} == {("champion", "popularity"), ("challenger", "item_knn")}
    assert {row[5:] for row in found} == {(0.5, 0.5, 1)}  # the split is recorded with every impression
    assert expected["champion"][2] == 0  # nobody bought what they do not like

    with connect(url) as conn:
        assert evaluate_online(conn) == {RUN: 2 * (1 + 5) * 5}  # 2 arms x (all + 5 positions) x 5 metrics
        comparison = arm_comparison(conn, RUN, table="ml.model_evaluations").set_index("arm")
    for arm, (shown, clicks, purchases) in expected.items():
        assert comparison.loc[arm, "ctr"] == pytest.approx(clicks / shown)
        assert comparison.loc[arm, "conversion_rate"] == pytest.approx(purchases / shown)
    assert comparison.loc["challenger", "ctr_z"] > 0 and comparison.loc["challenger", "ctr_p"] < 0.001
    assert comparison.loc["challenger", "conversion_z"] > 0
    by_position = rows(
        url,
        "select k, sum(metric_value) from ml.model_evaluations where variant = 'online' and metric = 'impressions'"
        " and k > 0 group by k order by k",
    )
    assert by_position == [(position, float(tally["position", position])) for position in range(1, 6)]


@pytest.fixture
def small_run(database, contract_tables):
    """A hand-made published run: shopper A has the list c1..c3 (no dbt), and shopper E was erased."""
    contract_tables(database, "user_id_map", "dim_items")
    contract_tables(database, *publish.RECS_TABLES, schema=publish.BUILD_SCHEMA)
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        keystore.install_key(conn, os.environ["RECSYS_PSEUDONYM_KEY"])  # the API checks erasures with it in SQL
        cur.execute(erasure.ERASURE_DDL)
        cur.execute(
            """
            insert into identity.user_id_map (user_id, shop_user_id, account_user_id) values ('pA', 'A', 'pA');
            insert into quality.erased_users (user_key, erased_at) values (%(erased)s, now());
            insert into recs_build.runs (run_id, is_published, champion_model) values (%(run)s, true, 'als');
            insert into recs_build.user_recommendations (user_id, placement, item_rank, item_id, score, reason_code,
                run_id)
                select 'pA', 'for_you', rank, 'c' || rank, 1.0 / rank, 'popular', %(run)s
                from generate_series(1, 3) as rank;
            insert into recs_build.cold_start_recommendations (segment_key, item_rank, item_id, score, run_id)
                values ('all', 1, 'c9', 0.8, %(run)s);
            insert into recs_build.similar_items (item_id, item_rank, similar_item_id, score, run_id)
                values ('c1', 1, 'c2', 0.5, %(run)s);
            """,
            {"run": RUN, "erased": erasure.user_key("E", os.environ["RECSYS_PSEUDONYM_KEY"])},
        )
    conn.close()
    with psycopg2.connect(database) as conn:
        publish.swap_recs(conn, RUN)
    conn.close()
    return database


def test_what_was_shown_is_logged_and_erased_or_unknown_shoppers_never_are(small_run, tmp_path, capsys):
    store = Store(small_run)
    api = TestClient(create_app(store, Settings(TOKEN, tmp_path / "spool")))  # no A/B test
    shown = api.get("/v1/users/A/recommendations?n=2&placement=home", headers=AUTH).json()
    assert [item["item_id"] for item in shown["items"]] == ["c1", "c2"] and len(shown["request_id"]) == 32
    assert api.get("/v1/users/E/recommendations", headers=AUTH).status_code == 404  # erased
    assert api.get("/v1/users/newcomer/recommendations", headers=AUTH).json()["request_id"] is None
    assert api.get("/v1/users/A/recommendations?placement=a%20b", headers=AUTH).status_code == 422
    click = {"user_id": "A", "event_type": "click", "item_id": "c2", "request_id": shown["request_id"]}
    assert api.post("/v1/events", json={"events": [click]}, headers=AUTH).json()["accepted"] == 1
    store.close()

    shop = tmp_path / "shop"
    cli.main(["events-drain", "--spool", str(tmp_path / "spool"), "--landing", str(shop)])
    (day,) = [path.name.removeprefix("api-") for path in shop.iterdir()]
    assert capsys.readouterr().out.splitlines() == [
        f"{day}: read 1, landed 1, duplicates 0, quarantined 0",
        f"{day}: impressions logged 2, landed 2",
    ]
    landed = (shop / f"api-{day}" / "impressions.csv").read_text().splitlines()
    header = "request_id,user_id,item_id,position,shown_at,run_id,model_name,arm,experiment,challenger_share,placement"
    assert landed[0] == header
    fields = [line.split(",") for line in landed[1:]]
    assert [(row[0], row[1], row[2], row[3], row[5], row[6], row[7], row[10]) for row in fields] == [
        (shown["request_id"], "A", f"c{n}", str(n), RUN, "als", "", "for_you") for n in (1, 2)
    ]
    with (shop / f"api-{day}" / "events.csv").open() as handle:
        (landed_click,) = csv.DictReader(handle)
    assert (landed_click["event_type"], landed_click["item_id"]) == ("click", "c2")
    assert landed_click["request_id"] == shown["request_id"]  # the click names the list it came from


def test_bad_impression_rows_are_quarantined_with_reasons_and_the_counts_reconcile(database, tmp_path):
    batch = tmp_path / "shop" / "api-2026-11-03"
    batch.mkdir(parents=True)
    for name, header in [
        ("users", "user_id,signup_at"),
        ("items", "item_id"),
        ("events", "user_id,event_type,event_at"),
    ]:
        (batch / f"{name}.csv").write_text(header + "\n")
    (batch / "impressions.csv").write_text(
        "request_id,user_id,item_id,position,shown_at,arm\n"
        "r1,A,c1,1,2026-11-03T10:00:00Z,champion\n"
        "r1,A,c2,first,2026-11-03T10:00:00Z,champion\n"
        ",A,c3,3,2026-11-03T10:00:00Z,champion\n"
        "r1,A,c4,4,yesterday,champion\n"
        "r1,A,c5,5\n"
    )
    with connect(database) as conn:
        (audit,) = [
            row for row in load.load_landing(conn, tmp_path / "shop", batch.name) if row["table_name"] == "impressions"
        ]
    assert (audit["rows_read"], audit["rows_loaded"], audit["rows_rejected"]) == (5, 1, 4)
    reasons = rows(
        database, "select line_number, reason from quality.rejected_rows where table_name = 'impressions' order by 1"
    )
    assert reasons == [
        (3, "position: cannot parse 'first' as integer"),
        (4, "missing required value: request_id"),
        (5, "shown_at: cannot parse 'yesterday' as timestamp"),
        (6, "expected 6 fields, got 4"),
    ]
