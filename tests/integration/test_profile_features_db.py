"""The point-in-time profile function of the dbt project, and the learned ranker reading it, on a hand-made warehouse.

Items: ``kettle`` (Home > Kitchen > Kettles, brand Acme, 20.00), ``lamp`` (Home, no leaf below the top level,
no brand, no price), ``shoe`` (Fashion > Shoes, brand Acme, 100.00). Half-life 30 days. Events:

* ``u1`` views ``kettle`` on 2026-10-02 (30 days before AS_OF), carts ``shoe`` on 2026-10-31 (1 day before) and
  buys ``kettle`` at AS_OF exactly;
* ``u2`` views ``lamp`` on 2026-10-01.

At AS_OF the purchase is not known yet (only events strictly before count). Decayed to AS_OF, u1's kettle weighs
1 x 0.5 = 0.5 and shoe 3 x 0.5^(1/30): Home and Kettles get 0.5 / (0.5 + shoe) of their type, Fashion and Shoes
the rest, Acme all of it; the price level is the weighted mean of ln(21) and ln(101); 2 events, 0 purchases,
1 day since the last. u2: Home 1, no leaf tag (lamp's leaf is its top level), no brand, no price level, 1 event,
31 days. A day later (LATER) u1's purchase counts: kettle weighs 1 x 0.5^(31/30) + 5 x 0.5^(1/30), shoe
3 x 0.5^(2/30); 3 events, 1 purchase, 1 day.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg2
import pytest

from recsys.db import frames
from recsys.features.interactions import Interactions, load_interactions, read_events, to_epoch_seconds
from recsys.features.profile_source import ProfileSource, user_profile
from recsys.models.neural_ranker import NeuralRanker
from recsys.models.popularity import PopularityRecommender
from recsys.models.ranker import PROFILE_FEATURES

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
LATER = AS_OF + timedelta(days=1)
HALF_LIFE = 30.0
DAY = timedelta(days=1)
EVENTS = [  # user, item, event type, time
    ("u1", "kettle", "view", AS_OF - 30 * DAY),
    ("u1", "shoe", "cart", AS_OF - DAY),
    ("u1", "kettle", "purchase", AS_OF),
    ("u2", "lamp", "view", AS_OF - 31 * DAY),
]
ITEMS = pd.DataFrame(
    {
        "item_id": ["kettle", "lamp", "shoe"],
        "category": ["Home", "Home", "Fashion"],
        "subcategory": ["Kettles", "Home", "Shoes"],
        "category_path": ["Home > Kitchen > Kettles", "Home", "Fashion > Shoes"],
        "brand": ["Acme", None, "Acme"],
        "price": [20.0, None, 100.0],
    }
)


def decay(days: float) -> float:
    return 0.5 ** (days / HALF_LIFE)


@pytest.fixture(scope="module")
def warehouse(fresh_database, contract_tables, profile_function_ddl) -> str:
    """The hand-made warehouse with the profile function as ``dbt run-operation install_profile_features`` renders
    it (tests/conftest.py)."""
    url = fresh_database()
    contract_tables(url, "fct_interactions", "dim_items", "dim_users")
    events = pd.DataFrame(EVENTS, columns=["user_id", "item_id", "event_type", "event_at"])
    events = events.assign(event_id=[f"e{index}" for index in range(len(events))], account_user_id=events["user_id"])
    users = pd.DataFrame({"user_id": ["u1", "u2"], "age_band": "25-34", "gender": "f", "region": "north"})
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(profile_function_ddl)
        frames.copy_frame(conn, "analytics.fct_interactions", events)
        frames.copy_frame(conn, "analytics.dim_items", ITEMS)
        frames.copy_frame(conn, "analytics.dim_users", users)
    conn.close()
    return url


def profile(url: str, as_of: datetime) -> dict[tuple[str, str], float]:
    rows = ProfileSource(url).read(to_epoch_seconds(as_of), HALF_LIFE)
    return {(row.user_id, row.feature): row.value for row in rows.itertuples()}


def expected_at_as_of() -> dict[tuple[str, str], float]:
    kettle, shoe = 1 * decay(30), 3 * decay(1)
    home = kettle / (kettle + shoe)
    return {
        ("u1", "category:Home"): home,
        ("u1", "category:Fashion"): 1 - home,
        ("u1", "subcategory:Kettles"): home,
        ("u1", "subcategory:Shoes"): 1 - home,
        ("u1", "brand:Acme"): 1.0,
        ("u1", "log_price_level"): (kettle * np.log(21) + shoe * np.log(101)) / (kettle + shoe),
        ("u1", "events"): 2.0,
        ("u1", "purchases"): 0.0,
        ("u1", "days_since_last_event"): 1.0,
        ("u2", "category:Home"): 1.0,
        ("u2", "events"): 1.0,
        ("u2", "purchases"): 0.0,
        ("u2", "days_since_last_event"): 31.0,
    }


def test_the_function_sees_only_the_events_strictly_before_as_of(warehouse) -> None:
    got, expected = profile(warehouse, AS_OF), expected_at_as_of()
    assert got.keys() == expected.keys(), "the purchase at as_of is not known yet; u2 has no leaf, brand or price"
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key


def test_the_function_reads_only_the_users_asked_for_once_each(warehouse) -> None:
    rows = ProfileSource(warehouse).read(to_epoch_seconds(AS_OF), HALF_LIFE, np.array(["u2", "u2", "nobody"]))
    expected = {key: value for key, value in expected_at_as_of().items() if key[0] == "u2"}
    assert dict(zip(zip(rows["user_id"], rows["feature"], strict=True), rows["value"], strict=True)) == expected
    assert len(rows) == len(expected), "a user named twice is read once"


def test_a_day_later_the_purchase_counts(warehouse) -> None:
    got = profile(warehouse, LATER)
    kettle, shoe = 1 * decay(31) + 5 * decay(1), 3 * decay(2)
    assert got[("u1", "category:Home")] == pytest.approx(kettle / (kettle + shoe), rel=1e-12)
    assert got[("u1", "subcategory:Shoes")] == pytest.approx(shoe / (kettle + shoe), rel=1e-12)
    assert (got[("u1", "events")], got[("u1", "purchases")], got[("u1", "days_since_last_event")]) == (3, 1, 1)
    assert got[("u2", "days_since_last_event")] == pytest.approx(32.0)


def test_read_events_reads_the_window_with_ids_as_categoricals(warehouse) -> None:
    """The half-open window [start, end) of the events, ids as categoricals, times as epoch seconds."""
    with psycopg2.connect(warehouse) as conn:
        window = read_events(conn, AS_OF - 30 * DAY, AS_OF)
        empty = read_events(conn, LATER, LATER + DAY)
    conn.close()
    rows = sorted(zip(window["user_id"], window["item_id"], window["event_type"], window["event_ts"], strict=True))
    assert rows == [
        ("u1", "kettle", "view", to_epoch_seconds(AS_OF - 30 * DAY)),
        ("u1", "shoe", "cart", to_epoch_seconds(AS_OF - DAY)),
    ], "the view 30 days before is in, the purchase at the end and u2's view 31 days before are not"
    assert [str(window[name].dtype) for name in ("user_id", "item_id", "event_type")] == ["category"] * 3
    assert window["event_ts"].dtype == np.float64
    assert empty.empty and list(empty.columns) == list(window.columns)


def test_load_interactions_attaches_the_warehouse_with_its_password(warehouse) -> None:
    """The source is a picklable DSN (the workers' fits open their own connection); ``repr`` hides it."""
    with_password = warehouse.replace("postgresql://postgres@", "postgresql://postgres:not-checked@")
    with psycopg2.connect(with_password) as conn:  # trust authentication: the password is carried, not checked
        data = load_interactions(conn, side_data=True)
    conn.close()
    source = pickle.loads(pickle.dumps(data)).profile_source
    assert "password=not-checked" in source.dsn and "not-checked" not in repr(source)
    assert profile(source.dsn, AS_OF) == profile(warehouse, AS_OF)


def test_the_ranker_reads_the_functions_profile(warehouse, caplog) -> None:
    """Its interest, price and activity columns of u1's pairs at AS_OF are the function's values there."""
    with psycopg2.connect(warehouse) as conn:
        data = load_interactions(conn, side_data=True)
    conn.close()
    with caplog.at_level(logging.WARNING, logger="recsys.models.ranker"):
        model = NeuralRanker(candidate_models=[PopularityRecommender()], label_windows=1).fit(data, AS_OF)
    assert "without a profile source" not in caplog.text
    expected = expected_at_as_of()
    u1 = int(np.flatnonzero(data.user_ids == "u1")[0])
    items = np.array([int(np.flatnonzero(data.item_ids == name)[0]) for name in ("kettle", "lamp", "shoe")])
    features = model._features(model.profile_, np.array([u1]), np.zeros(3, dtype=np.int64), items)
    column = {name: features[:, PROFILE_FEATURES.index(name)] for name in PROFILE_FEATURES}
    home = expected[("u1", "category:Home")]
    np.testing.assert_allclose(column["category_interest"], [home, home, 1 - home])
    np.testing.assert_allclose(column["leaf_interest"], [home, home, 1 - home])  # lamp's leaf is its category
    np.testing.assert_allclose(column["brand_interest"], [1, 0, 1])
    price_level = expected[("u1", "log_price_level")]
    np.testing.assert_allclose(column["price_gap"][[0, 2]], np.log1p([20.0, 100.0]) - price_level)
    np.testing.assert_allclose(column["user_events"], np.log1p(2))
    np.testing.assert_allclose(column["user_purchases"], 0.0)
    np.testing.assert_allclose(column["user_recency_days"], np.log1p(1.0))


def test_the_profile_is_indexed_to_the_encoding_and_absent_without_a_source(warehouse) -> None:
    with psycopg2.connect(warehouse) as conn:
        data = load_interactions(conn, side_data=True)
    conn.close()
    read = user_profile(data.profile_source, data.user_ids, data.items, to_epoch_seconds(AS_OF), HALF_LIFE)
    assert dict(zip(data.user_ids, read.events, strict=True)) == {"u1": 2, "u2": 1}
    assert np.isnan(read.log_price_level[data.user_ids == "u2"]).all(), "u2 has no priced item"
    bare: Interactions = replace(data, profile_source=None)
    model = NeuralRanker(candidate_models=[PopularityRecommender()], label_windows=1).fit(bare, AS_OF)
    assert model.profile_.user is None
