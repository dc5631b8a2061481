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

import os
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg2
import pytest

from recsys.db import frames
from recsys.features.interactions import load_interactions
from recsys.models import registry
from recsys.orchestration import publishing, training
from recsys.usecases import cold_start

END = datetime(2026, 3, 1, tzinfo=UTC)
START = END - timedelta(days=1)
CUTOFF = END - timedelta(days=7)
A_ITEMS = [f"a{index:02d}" for index in range(10)]
B_ITEMS = [f"b{index:02d}" for index in range(10)]

#: the dbt models the cold-start code reads, created from their contracts (tests/conftest.py)
TABLES = ("fct_interactions", "dim_items", "dim_users")


def load_warehouse(dsn: str, events: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame) -> None:
    """Fill the three analytics tables the cold-start code reads (events need user, item, type, time)."""
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
        frames.copy_frame(conn, "analytics.fct_interactions", events)
        frames.copy_frame(conn, "analytics.dim_items", items)
        frames.copy_frame(conn, "analytics.dim_users", users)
    conn.close()


def query(dsn: str, sql: str, params: tuple = ()) -> pd.DataFrame:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cursor:
        cursor.execute(sql, params)
        frame = pd.DataFrame(cursor.fetchall(), columns=[column.name for column in cursor.description])
    conn.close()
    return frame


def small_config(min_segment_users: int) -> dict:
    config = registry.load_model_config()
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


# the planted regions are one category each: the diversity re-rank would interleave them
pytestmark = pytest.mark.usefixtures("no_rerank")


@pytest.fixture
def analytics(database: str, contract_tables) -> str:
    """A fresh database with the empty analytics tables of :data:`TABLES`."""
    contract_tables(database, *TABLES)
    return database


@pytest.fixture
def planted(analytics: str) -> str:
    load_warehouse(analytics, *planted_shop())
    return analytics


def test_new_users_are_evaluated_and_served_per_the_contract(planted: str) -> None:
    config = small_config(min_segment_users=10)
    result = training.train_and_evaluate(planted, "run_1", START, END, config=config)
    assert result["cold_start"]["users"] == 40

    rows = query(planted, "select * from ml.model_evaluations where segment = 'new_users'")
    assert set(rows.variant) == {"all_items"}
    assert set(rows.model_name) == {"popularity", "segment_popularity", "cold_start_demographic", "friends_bought"}
    assert set(rows.metric) == {"ndcg", "precision", "recall", "hit_rate", "lift_vs_popularity", "users"}
    assert set(rows[rows.metric == "ndcg"].k) == {5, 10, 20}
    assert (rows[rows.metric == "users"].metric_value == 40).all() and (rows[rows.metric == "users"].k == 0).all()
    value = rows.set_index(["model_name", "metric", "k"]).metric_value
    assert value["popularity", "hit_rate", 10] == 0.5, "popularity lists B items only: every North newcomer misses"
    assert value["segment_popularity", "hit_rate", 10] == 0.5, "both segments mix the regions"
    assert value["cold_start_demographic", "hit_rate", 10] == 1.0, "the region decides the category"
    assert value["popularity", "lift_vs_popularity", 10] == 1.0
    assert value["friends_bought", "lift_vs_popularity", 10] == 1.0, "no social data: the popularity fill alone"
    lift = value["cold_start_demographic", "lift_vs_popularity", 10]
    assert lift == pytest.approx(value["cold_start_demographic", "ndcg", 10] / value["popularity", "ndcg", 10])
    assert lift > 1.5
    print(
        "\n" + value.unstack("model_name").loc[[("ndcg", 10), ("hit_rate", 10), ("lift_vs_popularity", 10)]].to_string()
    )

    result = publishing.generate_recommendations(planted, "run_1", END, n=5, config=config)
    assert result["cold_start_model"] == "cold_start_demographic" and result["cold_start_users"] == 2
    recs = query(
        planted,
        "select * from ml.recommendations where left(user_id, 4) = 'cold' and placement = 'for_you'"
        " order by user_id, item_rank",
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
    result = publishing.generate_recommendations(planted, "run_1", END, n=5, config=config)
    # no evaluation to choose on: the segment lists come from segment popularity, new users get global popularity
    assert result["cold_start_model"] == "popularity" and result["cold_start_users"] == 0
    table = query(planted, "select distinct segment_key from ml.cold_start_recommendations")
    assert set(table.segment_key) == {"all", "25-34|female", "25-34|male"}

    config = small_config(min_segment_users=71)  # at the end each segment has 70 users with events
    publishing.generate_recommendations(planted, "run_1", END, n=5, config=config)
    table = query(planted, "select distinct segment_key from ml.cold_start_recommendations")
    assert set(table.segment_key) == {"all"}


#: the simulator's age bands (edges 25, 35, 45, 55) for the bands of dim_users
SIMULATED_BAND = {"under_18": 0, "18-24": 0, "25-34": 1, "35-44": 2, "45-54": 3, "55-64": 4, "65_plus": 4}
AGE_BANDS = [(18, "18-24"), (25, "25-34"), (35, "35-44"), (45, "45-54"), (55, "55-64"), (65, "65_plus")]


def simulated_warehouse(dsn: str, landing) -> datetime:
    """The analytics tables of a clean simulated shop (what dbt builds, for the columns read here); returns the end."""
    events = pd.read_csv(landing / "events.csv", usecols=["user_id", "item_id", "event_type", "event_at"])
    events = events[events.event_type.isin(["view", "cart", "remove_from_cart", "purchase"])].copy()
    events["event_at"] = pd.to_datetime(events["event_at"], utc=True, format="ISO8601")
    items = pd.read_csv(landing / "items.csv", usecols=["item_id", "category_path"])
    items["category"] = items["category_path"].str.split(" > ").str[0]
    users = pd.read_csv(landing / "users.csv")
    end = events["event_at"].max().ceil("D").to_pydatetime()
    age = end.year - users.pop("birth_year")
    edges, names = zip(*AGE_BANDS, strict=True)
    users["age_band"] = np.where(
        age < 18, "under_18", np.array(names)[np.maximum(np.searchsorted(edges, age, "right") - 1, 0)]
    )
    users["signup_at"] = pd.to_datetime(users["signup_at"], utc=True, format="ISO8601")
    users = users[["user_id", "signup_at", "age_band", "gender", "region", "platform", "signup_channel"]].assign(
        is_personalization_allowed=users["is_personalization_allowed"].eq("true")
    )
    load_warehouse(dsn, events, items, users)
    return end


def test_simulated_shop_new_users_and_the_planted_prior(analytics: str, tmp_path) -> None:
    from recsys.dev.simulate import CATEGORIES, GENDERS, simulate

    # RECSYS_COLD_START_USERS: a larger shop for the measurement in docs/benchmarks.md (more new users, less noise)
    simulate(
        tmp_path, users=int(os.environ.get("RECSYS_COLD_START_USERS", 60_000)), items=500, days=21, seed=7, dirty=False
    )
    end = simulated_warehouse(analytics, tmp_path)
    cutoff = end - timedelta(days=7)
    config = small_config(min_segment_users=20)
    result = training.train_and_evaluate(analytics, "sim", end - timedelta(days=1), end, config=config)

    # the evaluated users, counted independently: signed up in the test week, a purchase in their first 7 days
    users = query(analytics, "select user_id, signup_at from analytics.dim_users")
    events = query(analytics, "select user_id, event_type, event_at from analytics.fct_interactions")
    events = events.merge(users, on="user_id")
    seen_before = set(events.loc[events.event_at < cutoff, "user_id"])
    first_week = (
        events.event_type.eq("purchase")
        & events.signup_at.ge(cutoff)
        & events.event_at.lt(events.signup_at + timedelta(days=7))
        & ~events.user_id.isin(seen_before)
    )
    expected = events.loc[first_week, "user_id"].nunique()
    assert result["cold_start"]["users"] == expected >= 20

    rows = query(analytics, "select * from ml.model_evaluations where run_id = 'sim' and segment = 'new_users'")
    value = rows.set_index(["model_name", "metric", "k"]).metric_value
    for model in ("popularity", "segment_popularity", "cold_start_demographic", "friends_bought"):
        assert value[model, "users", 0] == expected
        for metric in ("ndcg", "precision", "recall", "hit_rate"):
            assert {(metric, cut) for cut in (5, 10, 20)} <= set(value[model].index)
        lift = value[model, "ndcg", 10] / value["popularity", "ndcg", 10]
        assert value[model, "lift_vs_popularity", 10] == pytest.approx(lift)
    table = rows[rows.k.eq(10) & rows.metric.isin(["ndcg", "hit_rate", "recall", "lift_vs_popularity"])]
    print(
        f"\n{expected} new users, k=10, paired z vs popularity {result['cold_start']['z_vs_popularity']}\n"
        + table.pivot(index="model_name", columns="metric", values="metric_value").to_string()
    )

    # the known answer: each age band x gender segment's planted category prior, as a deviation from the average
    # segment, is what the model predicts from demographics (global popularity predicts no deviation at all)
    with psycopg2.connect(analytics) as conn:
        data = load_interactions(conn, side_data=True)
        people = cold_start.read_demographics(conn, data.user_ids)
    conn.close()
    model = cold_start.DemographicRecommender(min_segment_users=50).fit(
        cold_start.with_demographics(data.before(cutoff), people), cutoff
    )
    segment = cold_start.segment_keys(people)
    sizes = pd.Series(segment).value_counts()
    large = people[pd.Series(segment).isin(sizes[sizes >= 500].index) & people.gender.isin(GENDERS[:2])]
    predicted = pd.DataFrame(model.predict_shares(large)).groupby(cold_start.segment_keys(large)).mean()
    names = sorted(category.name for category in CATEGORIES)
    affinity = np.array([category.affinity for category in sorted(CATEGORIES, key=lambda category: category.name)])
    band = predicted.index.str.split("|").str[0].map(SIMULATED_BAND).to_numpy()
    gender = predicted.index.str.split("|").str[1].map({"female": 1, "male": 2}).to_numpy()
    planted = np.exp(affinity[:, 0] + affinity[:, gender].T + affinity[:, 3 + band].T)
    planted /= planted.sum(axis=1, keepdims=True)
    assert len(predicted) >= 8 and predicted.shape[1] == len(names)
    deviation = predicted.to_numpy() - predicted.to_numpy().mean(axis=0)
    planted_deviation = planted - planted.mean(axis=0)
    correlation = np.corrcoef(deviation.ravel(), planted_deviation.ravel())[0, 1]
    print(f"correlation of predicted and planted segment deviations: {correlation:.3f}")
    assert correlation > 0.8
