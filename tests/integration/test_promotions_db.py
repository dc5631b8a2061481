"""Promotion targeting on real Postgres: a hand-built warehouse with known answers, and a simulated shop.

The hand-built warehouse (END = 2026-03-01): 40 users with the same two views and three 50.00
orders, one during each of the promotions P0 (Books, days -40..-37), P1 (sitewide, -20..-17) and
P2 (sitewide, -10..-7). The 20 "sensitive" users ``s00..s19`` redeem the promotion on each of those
orders, the 20 others ``n00..n19`` never do; ``s00`` opted out of personalization. P3 (Books) is
scheduled for days +1..+8. So RFM cannot tell the users apart (all tied), while the history of
redemptions can: held out P2, the propensity model (trained on P0 and P1) ranks every redeemer first.
"""

from __future__ import annotations

import io
import json
import subprocess
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg2
import pytest

from recsys.db import frames, keystore, runs
from recsys.db.warehouse import REPO_ROOT, connect
from recsys.dev.local import BIN, environment
from recsys.dev.simulate import simulate
from recsys.ingest import landing, load
from recsys.usecases import promotions

END = datetime(2026, 3, 1, tzinfo=UTC)
SENSITIVE = [f"s{number:02d}" for number in range(20)]
OTHERS = [f"n{number:02d}" for number in range(20)]
CONFIG = {
    "evaluation": {"test_days": 7},
    "privacy": {"min_segment_users": 10},
    "promotions": {"holdout_promotions": 1, "target_share": 0.25, "max_targets": 100},
}
#: the dbt models promotion targeting reads, created from their contracts (tests/conftest.py)
TABLES = ("dim_users", "dim_items", "dim_promotions", "fct_interactions", "fct_orders", "fct_redemptions")


def days(number: float) -> datetime:
    return END + timedelta(days=number)


def query(url: str, sql: str, params: tuple = ()) -> pd.DataFrame:
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(sql, params or None)
        return pd.DataFrame(cursor.fetchall(), columns=[column.name for column in cursor.description])


@pytest.fixture
def planted(database: str, contract_tables) -> str:
    users = SENSITIVE + OTHERS
    is_sensitive = np.isin(users, SENSITIVE)
    order_days = {"P0": -39, "P1": -19, "P2": -9}
    orders = pd.DataFrame(
        {
            "user_id": np.repeat(users, 3),
            "ordered_at": np.tile([days(day) for day in order_days.values()], len(users)),
            "is_completed": True,
            "has_promotion": np.repeat(is_sensitive, 3),
            "net_amount": 50,
        }
    )
    redemptions = pd.DataFrame(
        {
            "promotion_id": np.tile(list(order_days), len(SENSITIVE)),
            "user_id": np.repeat(SENSITIVE, 3),
            "redeemed_at": np.tile([days(day) for day in order_days.values()], len(SENSITIVE)),
        }
    )
    contract_tables(database, *TABLES)
    with psycopg2.connect(database) as conn:
        frames.copy_frame(
            conn,
            "analytics.dim_users",
            pd.DataFrame(
                {"user_id": users, "signup_at": days(-100), "is_personalization_allowed": np.array(users) != "s00"}
            ),
        )
        frames.copy_frame(
            conn, "analytics.dim_items", pd.DataFrame({"item_id": ["b1", "h1"], "category": ["Books", "Home"]})
        )
        frames.copy_frame(
            conn,
            "analytics.dim_promotions",
            pd.DataFrame(
                {
                    "promotion_id": ["P0", "P1", "P2", "P3"],
                    "category": ["Books", None, None, "Books"],
                    "starts_at": [days(-40), days(-20), days(-10), days(1)],
                    "ends_at": [days(-37), days(-17), days(-7), days(8)],
                }
            ),
        )
        frames.copy_frame(
            conn,
            "analytics.fct_interactions",
            pd.DataFrame({"user_id": np.repeat(users, 2), "item_id": ["b1", "h1"] * len(users), "event_at": days(-45)}),
        )
        frames.copy_frame(conn, "analytics.fct_orders", orders)
        frames.copy_frame(conn, "analytics.fct_redemptions", redemptions)
    return database


def test_features_are_point_in_time(planted: str) -> None:
    p1 = promotions.Promotion("P1", None, pd.Timestamp(days(-20)), pd.Timestamp(days(-17)))
    with connect(planted) as conn:
        rows = promotions.promotion_rows(conn, p1, p1.starts_at, pd.Timestamp(days(-17)), history_days=60)
    rows = rows.set_index("user_id")
    assert len(rows) == 40
    # before P1's start: the P0 order only (redeemed by the sensitive users); the P1 order is the label
    assert rows.loc["s05", "redemption_share"] == 1.0 and rows.loc["s05", "promotion_order_share"] == 1.0
    assert rows.loc["n05", "redemption_share"] == 0.0 and rows.loc["n05", "promotion_order_share"] == 0.0
    assert rows["log_orders"].eq(np.float32(np.log(2))).all()  # one order each
    assert rows["category_share"].eq(1.0).all()  # sitewide: all events count
    assert rows["recency_days"].eq(19.0).all()  # last order on day -39
    assert rows["label"].to_dict() == {user: user.startswith("s") for user in rows.index}


def test_target_promotions_beats_rfm_and_targets_the_redeemers(planted: str) -> None:
    with connect(planted) as conn:
        result = promotions.target_promotions(conn, "run_a", END, CONFIG)
        again = promotions.target_promotions(conn, "run_a", END, CONFIG)  # a re-run replaces
    assert result["rows"] == again["rows"] == {"model_evaluations": 30, "promotion_targets": 10}

    evaluations = query(
        planted, "select model_name, segment, metric, k, metric_value from ml.model_evaluations where run_id = 'run_a'"
    )
    assert set(evaluations["segment"]) == {"all", "promotion:P2"} and set(evaluations["k"]) == {0}
    overall = evaluations[evaluations["segment"] == "all"].set_index(["model_name", "metric"])["metric_value"]
    expected = {
        # held-out P2: all 20 redeemers have redeemed P0 and P1, nobody else has
        ("promotion_propensity", "roc_auc"): 1.0,
        ("promotion_propensity", "precision_top_decile"): 1.0,
        ("promotion_propensity", "lift_top_decile"): 2.0,
        # every user has the same orders: RFM ties everyone, like targeting everyone
        ("promotion_rfm", "roc_auc"): 0.5,
        ("promotion_rfm", "precision_top_decile"): 0.5,
        ("promotion_everyone", "roc_auc"): 0.5,
        ("promotion_everyone", "lift_top_decile"): 1.0,
        ("promotion_everyone", "base_rate"): 0.5,
        ("promotion_everyone", "users"): 40,
    }
    assert {key: overall[key] for key in expected} == pytest.approx(expected)

    targets = query(planted, "select * from ml.promotion_targets where run_id = 'run_a' order by target_rank")
    # P3 is scheduled (starts within the 7-day horizon); ceil(0.25 * 40) = 10 targets, ties by user id, s00 opted out
    assert set(targets["promotion_id"]) == {"P3"}
    assert targets["user_id"].tolist() == SENSITIVE[1:11]
    assert targets["target_rank"].tolist() == list(range(1, 11))
    assert targets["propensity"].between(0.5, 1).all()


def test_no_active_promotion_writes_no_targets(planted: str) -> None:
    # 30 days earlier nothing runs and P1 starts 10 days later, beyond the 7-day horizon
    with connect(planted) as conn:
        result = promotions.target_promotions(conn, "run_b", END - timedelta(days=30), CONFIG)
    assert result["rows"]["promotion_targets"] == 0 and result["promotions_targeted"] == 0
    assert query(planted, "select count(*) as n from ml.promotion_targets where run_id = 'run_b'")["n"].iloc[0] == 0


def test_an_incremental_run_scores_with_the_full_runs_model(planted: str) -> None:
    """A full run 12 days before END (P0 and P1 ended, P2 about to start) stores its model; the incremental run at
    END (P2 ended too, P3 about to start) scores P3 with it: no evaluation, no refit on P2, no model of its own."""
    with connect(planted) as conn:
        full = promotions.target_promotions(conn, "run_a", days(-12), CONFIG)
        incremental = promotions.target_promotions(conn, "run_b", END, CONFIG, carried_from="run_a")
        kept = runs.read_learners(conn, "run_a")[promotions.LEARNER_KEY]
        options = promotions.settings(CONFIG)
        expected, _ = promotions.targets(conn, pd.Timestamp(END), options, kept)
        refitted, _ = promotions.targets(conn, pd.Timestamp(END), options)
    assert (full["model"], incremental["model"]) == ("refitted", "kept from run_a")
    assert incremental["rows"] == {"model_evaluations": 0, "promotion_targets": 10}
    stored = query(planted, "select run_id from ml.fitted_learners where model_key = %s", (promotions.LEARNER_KEY,))
    assert stored["run_id"].tolist() == ["run_a"]
    targets = query(planted, "select * from ml.promotion_targets where run_id = 'run_b' order by target_rank")
    assert targets["user_id"].tolist() == expected["user_id"].tolist() == SENSITIVE[1:11]
    assert targets["propensity"].tolist() == pytest.approx(expected["propensity"].tolist(), rel=1e-6)  # stored real
    assert not np.allclose(targets["propensity"], refitted["propensity"])  # a refit on P2 too would differ


# --------------------------------------------------------------------------- the simulated shop

SHOP = {"users": 8_000, "items": 800, "days": 90, "seed": 3}


@pytest.fixture(scope="module")
def shop_warehouse(fresh_database, tmp_path_factory):
    """A simulated shop loaded and transformed by dbt (the new marts tested too); (url, landing dir, end)."""
    directory = tmp_path_factory.mktemp("promotion_shop")
    simulate(directory, **SHOP)
    url = fresh_database()
    env = environment(url, directory, airflow_home=tmp_path_factory.mktemp("airflow"))
    end = datetime.fromisoformat(json.loads((directory / "manifest.json").read_text())["end_date"]).replace(
        tzinfo=UTC
    ) + timedelta(days=1)
    with connect(url) as conn:
        load.load_landing(conn, directory, "batch_1")
    target = tmp_path_factory.mktemp("dbt_target")
    for command in (
        ["run", "--exclude", "tag:publish"],
        ["test", "--select", "dim_promotions", "fct_redemptions", "--exclude", "tag:publish"],
    ):
        subprocess.run(
            [str(BIN / "dbt"), *command, "--project-dir", str(REPO_ROOT / "dbt_project"), "--target-path", str(target)]
            + ["--vars", json.dumps({"as_of": end.isoformat()})],
            env=env,
            check=True,
            capture_output=True,
        )
    return url, directory, end


def test_on_the_simulated_shop_propensity_beats_rfm_and_everyone(shop_warehouse) -> None:
    url, directory, end = shop_warehouse
    with connect(url) as conn:
        result = promotions.target_promotions(conn, "run_shop", end)
    evaluation = result["evaluation"]
    assert evaluation["promotion_propensity.roc_auc"] > evaluation["promotion_rfm.roc_auc"] > 0.5
    assert evaluation["promotion_everyone.roc_auc"] == 0.5
    assert (
        evaluation["promotion_propensity.precision_top_decile"]
        > evaluation["promotion_rfm.precision_top_decile"]
        > evaluation["promotion_everyone.precision_top_decile"]
    )

    # the simulator's scheduled promotion starts the day after the window: the one targeted
    scheduled = pd.read_csv(directory / landing.FILES["promotions"].filename, dtype=str).iloc[-1]
    targets = query(url, "select * from ml.promotion_targets where run_id = 'run_shop'")
    assert set(targets["promotion_id"]) == {scheduled["promotion_id"]}
    users = query(url, "select user_id, is_personalization_allowed from analytics.dim_users")
    assert targets["user_id"].isin(users.loc[users["is_personalization_allowed"], "user_id"]).all()
    assert sorted(targets["target_rank"]) == list(range(1, len(targets) + 1))
    assert len(targets) <= int(np.ceil(0.2 * len(users)))

    # known answer: the targeted users are more promotion-sensitive (planted truth) than the others
    truth = pd.read_csv(directory / landing.TRUTH_FILE, dtype={"user_id": str})
    humans = truth[truth["is_bot"].astype(str).str.lower() == "false"]
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute("create temp table truth (shop_user_id text, promo_sensitivity double precision)")
        buffer = io.StringIO(humans[["user_id", "promo_sensitivity"]].to_csv(index=False, header=False))
        cursor.copy_expert("copy truth from stdin with (format csv)", buffer)
        cursor.execute(
            "select avg(truth.promo_sensitivity) filter (where targets.user_id is not null),"
            " avg(truth.promo_sensitivity) filter (where targets.user_id is null)"
            " from truth left join ml.promotion_targets as targets on targets.run_id = 'run_shop' and targets.user_id"
            " = " + keystore.PSEUDONYMIZE_SQL.format("truth.shop_user_id")
        )
        targeted, others = cursor.fetchone()
    assert targeted > others + 0.05, (targeted, others)
