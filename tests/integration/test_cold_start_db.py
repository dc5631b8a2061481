"""New-user cold start against a real Postgres: evaluation rows, serving, and the simulated shop's planted prior.

The planted warehouse: items ``a00..a09`` (category A) and ``b00..b09`` (B).
40 established users in region North view and buy two A items each, 60 in
region South buy three B items each, so B dominates popularity; everybody is
``25-34`` and gender alternates, so both ``age_band|gender`` segments mix the
regions and segment popularity is global popularity. 20 North and 20 South
users sign up five days before the end and buy one item of their region's
category within their first week. Global (and segment) popularity ranks B
items first and misses every new North user (hit rate@10 exactly 0.5); the
demographic model learns the region and hits every new user (1.0).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg2
import pytest

from recsys import cold_start, training
from recsys.interactions import load_interactions

END = datetime(2026, 3, 1, tzinfo=UTC)
START = END - timedelta(days=1)
CUTOFF = END - timedelta(days=7)
A_ITEMS = [f"a{index:02d}" for index in range(10)]
B_ITEMS = [f"b{index:02d}" for index in range(10)]

DDL = """
create schema analytics;
create table analytics.fct_interactions (
    event_id text primary key, user_id text not null, item_id text, event_type text not null,
    event_at timestamptz not null, event_date date not null, session_id text, platform text,
    quantity integer, price numeric
);
create table analytics.dim_items (
    item_id text primary key, item_name text, category text, subcategory text, category_path text,
    brand text, price numeric, is_in_stock boolean, created_at timestamptz
);
create table analytics.dim_users (
    user_id text primary key, signup_at timestamptz, age_band text, gender text, region text,
    platform text, signup_channel text, is_personalization_allowed boolean
);
"""


def copy_frame(conn, table: str, frame: pd.DataFrame) -> None:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False, na_rep="\\N")
    buffer.seek(0)
    with conn.cursor() as cursor:
        cursor.copy_expert(
            f"copy {table} ({', '.join(frame.columns)}) from stdin with (format csv, null '\\N')", buffer
        )


def load_warehouse(dsn: str, events: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame) -> None:
    """Write the three analytics tables the cold-start code reads (events need user, item, type, time)."""
    events = events.reset_index(drop=True)
    events = events.assign(
        event_id=[f"e{index:07d}" for index in range(len(events))],
        event_date=events["event_at"].dt.date,
        session_id="s-" + events["user_id"],
        platform="web",
        quantity=1,
        price=10,
    )
    items = items.assign(item_name="Item " + items["item_id"], is_in_stock=True, price=10)
    with psycopg2.connect(dsn) as conn:
        with conn.cursor() as cursor:
            cursor.execute(DDL)
        copy_frame(conn, "analytics.fct_interactions", events)
        copy_frame(conn, "analytics.dim_items", items)
        copy_frame(conn, "analytics.dim_users", users)
    conn.close()


def query(dsn: str, sql: str, params: tuple = ()) -> pd.DataFrame:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cursor:
        cursor.execute(sql, params)
        frame = pd.DataFrame(cursor.fetchall(), columns=[column.name for column in cursor.description])
    conn.close()
    return frame


def small_config(min_segment_users: int) -> dict:
    config = training.load_model_config()
    config["models"] = {name: config["models"][name] for name in ("popularity", "repeat_purchase")}
    config["privacy"] = {"min_segment_users": min_segment_users}
    return config


def planted_shop() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    north = [f"north{index:02d}" for index in range(40)]
    south = [f"south{index:02d}" for index in range(60)]
    new_north = [f"new_north{index:02d}" for index in range(20)]
    new_south = [f"new_south{index:02d}" for index in range(20)]
    cold = ["cold_north", "cold_south", "cold_optout"]
    rows = []
    for number, user in enumerate(north):
        for offset in range(2):
            item = A_ITEMS[(number + offset) % 10]
            rows += [(user, item, "view", 20 - offset), (user, item, "purchase", 19 - offset)]
    for number, user in enumerate(south):
        rows += [(user, B_ITEMS[(number + offset) % 10], "purchase", 20 - offset) for offset in range(3)]
    rows += [(user, A_ITEMS[number % 10], "purchase", 4) for number, user in enumerate(new_north)]
    rows += [(user, B_ITEMS[number % 10], "purchase", 4) for number, user in enumerate(new_south)]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "days_before_end"])
    events["event_at"] = END - pd.to_timedelta(events.pop("days_before_end"), unit="D")
    items = pd.DataFrame({"item_id": A_ITEMS + B_ITEMS, "category": ["A"] * 10 + ["B"] * 10})
    everyone = north + south + new_north + new_south + cold
    users = pd.DataFrame({"user_id": everyone})
    users["signup_at"] = np.where(
        users.user_id.str.startswith("new") | users.user_id.str.startswith("cold"),
        END - timedelta(days=5),
        datetime(2025, 1, 1, tzinfo=UTC),
    )
    users["age_band"] = "25-34"
    users["gender"] = np.where(np.arange(len(users)) % 2 == 0, "female", "male")
    users["region"] = np.where(users.user_id.str.contains("north") | (users.user_id == "cold_optout"), "North", "South")
    users["platform"] = "app"
    users["signup_channel"] = "ads"
    users["is_personalization_allowed"] = users.user_id != "cold_optout"
    return events, items, users


@pytest.fixture
def planted(database: str) -> str:
    load_warehouse(database, *planted_shop())
    return database


def test_new_users_are_evaluated_and_served_per_the_contract(planted: str) -> None:
    config = small_config(min_segment_users=10)
    result = training.train_and_evaluate(planted, "run_1", START, END, config=config)
    assert result["cold_start"]["users"] == 40

    rows = query(planted, "select * from ml.model_evaluations where segment = 'new_users'")
    assert set(rows.variant) == {"all_items"}
    assert set(rows.model_name) == {"popularity", "segment_popularity", "cold_start_demographic"}
    assert set(rows.metric) == {"ndcg", "precision", "recall", "hit_rate", "lift_vs_popularity", "users"}
    assert set(rows[rows.metric == "ndcg"].k) == {5, 10, 20}
    assert (rows[rows.metric == "users"].metric_value == 40).all() and (rows[rows.metric == "users"].k == 0).all()
    value = rows.set_index(["model_name", "metric", "k"]).metric_value
    assert value["popularity", "hit_rate", 10] == 0.5, "popularity lists B items only: every North newcomer misses"
    assert value["segment_popularity", "hit_rate", 10] == 0.5, "both segments mix the regions"
    assert value["cold_start_demographic", "hit_rate", 10] == 1.0, "the region decides the category"
    assert value["popularity", "lift_vs_popularity", 10] == 1.0
    lift = value["cold_start_demographic", "lift_vs_popularity", 10]
    assert lift == pytest.approx(value["cold_start_demographic", "ndcg", 10] / value["popularity", "ndcg", 10])
    assert lift > 1.5

    result = training.generate_recommendations(planted, "run_1", END, n=5, config=config)
    assert result["cold_start_model"] == "cold_start_demographic" and result["cold_start_users"] == 2
    recs = query(
        planted, "select * from ml.recommendations where left(user_id, 4) = 'cold' order by user_id, item_rank"
    )
    north, south, optout = (recs[recs.user_id == user] for user in ("cold_north", "cold_south", "cold_optout"))
    assert north.item_id.str.startswith("a").all() and south.item_id.str.startswith("b").all()
    assert (north.reason_code == "new_user_segment").all() and (north.model_name == "cold_start_demographic").all()
    assert (north.reason_text == "Popular with new shoppers like you (25-34, North)").all()
    assert (optout.reason_code == "popular").all() and optout.item_id.str.startswith("b").all(), "opted out"
    assert (north.score.diff().dropna() <= 0).all()

    table = query(planted, "select * from ml.cold_start_recommendations where run_id = 'run_1'")
    assert set(table.segment_key) == {"all", "25-34|female", "25-34|male"}
    assert (table.groupby("segment_key").size() == 20).all()


def test_small_segments_and_few_new_users_stay_private(planted: str) -> None:
    config = small_config(min_segment_users=41)  # more than the 40 new users; each segment has 60 established
    training.train_and_evaluate(planted, "run_1", START, END, config=config)
    rows = query(planted, "select metric, metric_value from ml.model_evaluations where segment = 'new_users'")
    assert set(rows.metric) == {"users"} and (rows.metric_value == 40).all()
    result = training.generate_recommendations(planted, "run_1", END, n=5, config=config)
    # no evaluation to choose on: the segment lists come from segment popularity, new users get global popularity
    assert result["cold_start_model"] == "popularity" and result["cold_start_users"] == 0
    table = query(planted, "select distinct segment_key from ml.cold_start_recommendations")
    assert set(table.segment_key) == {"all", "25-34|female", "25-34|male"}

    config = small_config(min_segment_users=71)  # at the end each segment has 70 users with events
    training.generate_recommendations(planted, "run_1", END, n=5, config=config)
    table = query(planted, "select distinct segment_key from ml.cold_start_recommendations")
    assert set(table.segment_key) == {"all"}
