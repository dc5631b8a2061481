"""``recsys.orchestration.training`` against a real Postgres with a small planted warehouse.

A throwaway database gets hand-built ``analytics`` tables. The planted shop:

* items ``a00..a09`` (cluster A) and ``b00..b09`` (cluster B); ``a09`` and
  ``b09`` are out of stock;
* 30 "A" users view four A items and buy one of them (days 27-19 before the
  end), then buy an A item they never touched in the validation week (day
  10) and another one in the test week (day 3); they rate their first and
  their test-week purchase 5 stars;
* 30 "B" users buy five B items (days 27-23; B dominates popularity), then a
  B item they never bought in the validation week (day 9) and another one in
  the test week (day 2); they rate those two purchases 4 stars;
* ``viewer``, ``buyer`` and ``carter`` touch one A item each (view, purchase,
  cart), ``loner`` viewed only ``a09`` (which nobody else touched, so it has
  no neighbours), ``optout`` has history but opted out of personalization,
  ``cold`` has no events.

Popularity recommends the B items to everybody, so it misses every A user;
item-KNN recommends the unseen items of the user's own cluster and hits
everyone: item-KNN must win on NDCG@10, in the validation week (where the
champion is chosen) as in the test week.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg2
import pytest

from recsys.db import frames
from recsys.evaluation import selection
from recsys.models import registry
from recsys.orchestration import challenger, publishing, schedule, training
from recsys.serving import rules

END = datetime(2026, 3, 1, tzinfo=UTC)
START = END - timedelta(days=1)
CUTOFF = END - timedelta(days=7)
VALIDATION_CUTOFF = END - timedelta(days=14)
A_ITEMS = [f"a{index:02d}" for index in range(10)]
B_ITEMS = [f"b{index:02d}" for index in range(10)]
OUT_OF_STOCK = {"a09", "b09"}
A_USERS = [f"ua{index:02d}" for index in range(30)]
B_USERS = [f"ub{index:02d}" for index in range(30)]
EXTRA_USERS = ["viewer", "buyer", "carter", "loner", "optout", "cold"]

#: the dbt models training reads, created from their contracts (tests/conftest.py)
TABLES = ("fct_interactions", "dim_items", "dim_users", "user_profiles", "fct_reviews")


def planted_events() -> pd.DataFrame:
    """The planted events (see the module docstring); times are spread over days, one event per row."""
    rows = []
    for number, user in enumerate(A_USERS):
        touched = [(number + offset) % 9 for offset in range(4)]  # four of a00..a08
        rows += [(user, A_ITEMS[item], "view", 27 - offset) for offset, item in enumerate(touched)]
        rows.append((user, A_ITEMS[touched[0]], "purchase", 19))
        rows.append((user, A_ITEMS[(number + 7) % 9], "purchase", 10))  # validation week, never touched before
        rows.append((user, A_ITEMS[(number + 5) % 9], "purchase", 3))  # test week, never touched before
    for number, user in enumerate(B_USERS):
        bought = [(number + offset) % 10 for offset in range(5)]
        rows += [(user, B_ITEMS[item], "purchase", 27 - offset) for offset, item in enumerate(bought)]
        rows.append((user, B_ITEMS[(number + 8) % 10], "purchase", 9))  # validation week, never bought before
        rows.append((user, B_ITEMS[(number + 6) % 10], "purchase", 2))  # test week, never bought before
    rows += [
        ("viewer", "a00", "view", 15),
        ("buyer", "a02", "purchase", 15),
        ("carter", "a03", "cart", 15),
        ("loner", "a09", "view", 15),
        ("optout", "a04", "purchase", 15),
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "days_before_end"])
    frame["event_at"] = (
        END - pd.to_timedelta(frame.pop("days_before_end"), unit="D") + pd.to_timedelta(np.arange(len(frame)), unit="s")
    )
    frame.insert(0, "event_id", [f"e{index:05d}" for index in range(len(frame))])
    frame["event_date"] = frame["event_at"].dt.date
    frame["session_id"] = "s-" + frame["user_id"]
    frame["platform"] = "web"
    frame["quantity"] = 1
    frame["price"] = 10
    return frame


def build_warehouse(dsn: str, events: pd.DataFrame) -> None:
    items = pd.DataFrame({"item_id": A_ITEMS + B_ITEMS})
    items["item_name"] = "Item " + items["item_id"]
    items["category"] = items["item_id"].str[0].str.upper()
    items["is_in_stock"] = ~items["item_id"].isin(OUT_OF_STOCK)
    items["price"] = 10
    users = pd.DataFrame({"user_id": A_USERS + B_USERS + EXTRA_USERS})
    users["signup_at"] = datetime(2025, 1, 1, tzinfo=UTC)
    users["age_band"] = ["25-34"] * 30 + ["35-44"] * 30 + [None] * len(EXTRA_USERS)
    users["gender"] = np.where(np.arange(len(users)) % 2 == 0, "female", "male")
    users["is_personalization_allowed"] = users["user_id"] != "optout"
    profiles = pd.DataFrame(
        {
            "user_id": A_USERS + B_USERS,
            "lifecycle_stage": ["active"] * 30 + ["loyal"] * 30,
            "spending_power": ["low"] * 30 + ["high"] * 30,
        }
    )
    purchases = events[events.event_type.eq("purchase") & events.user_id.isin(A_USERS + B_USERS)]
    reviewed = pd.concat(
        [purchases.sort_values("event_at").drop_duplicates("user_id"), purchases[purchases.event_at >= CUTOFF]]
    )
    reviews = pd.DataFrame(
        {
            "review_id": "r-" + reviewed.event_id,
            "user_id": reviewed.user_id,
            "item_id": reviewed.item_id,
            "rating": np.where(reviewed.user_id.isin(A_USERS), 5, 4),
            "reviewed_at": reviewed.event_at + pd.Timedelta(hours=1),
        }
    )
    with psycopg2.connect(dsn) as conn:
        frames.copy_frame(conn, "analytics.fct_interactions", events)
        frames.copy_frame(conn, "analytics.dim_items", items)
        frames.copy_frame(conn, "analytics.dim_users", users)
        frames.copy_frame(conn, "analytics.user_profiles", profiles)
        frames.copy_frame(conn, "analytics.fct_reviews", reviews)
    conn.close()


@pytest.fixture(autouse=True)
def every_segment(tmp_path, monkeypatch) -> None:
    """The planted segments are small (3 to 30 users): no k-anonymity suppression unless a test asks for it.

    The content model is left out: the planted items' only content is their cluster's category (A or B), which
    hands it the clusters item-KNN has to find; its known answers are in tests/unit/test_content.py and
    :func:`test_a_new_item_reaches_lists_only_through_its_content`.
    """
    text = registry.MODEL_CONFIG.read_text().replace("min_segment_users = 50", "min_segment_users = 1")
    text = text[: text.index("[models.content]")] + text[text.index("[promotions]") :]
    (tmp_path / "models.toml").write_text(text)
    monkeypatch.setenv("RECSYS_MODEL_CONFIG", str(tmp_path / "models.toml"))


# two planted clusters: the diversity re-rank would interleave them; tests of it set their own strength
pytestmark = pytest.mark.usefixtures("no_rerank")


@pytest.fixture
def empty_database(database: str, contract_tables, profile_function_ddl) -> str:
    """A fresh database (tests/conftest.py) with the empty analytics tables of :data:`TABLES` and the profile
    function the dbt hook creates (the learned rankers read it)."""
    contract_tables(database, *TABLES)
    with psycopg2.connect(database) as conn, conn.cursor() as cursor:
        cursor.execute(profile_function_ddl)
    conn.close()
    return database


@pytest.fixture
def warehouse(empty_database: str) -> str:
    build_warehouse(empty_database, planted_events())
    return empty_database


def query(dsn: str, sql: str, params: tuple = ()) -> pd.DataFrame:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cursor:
        cursor.execute(sql, params)
        frame = pd.DataFrame(cursor.fetchall(), columns=[column.name for column in cursor.description])
    conn.close()
    return frame


def metric(
    dsn: str, run_id: str, model: str, name: str, k: int, segment: str = "all", variant: str = "all_items"
) -> float:
    frame = query(
        dsn,
        "select metric_value from ml.model_evaluations where run_id = %s and model_name = %s and metric = %s "
        "and k = %s and segment = %s and variant = %s",
        (run_id, model, name, k, segment, variant),
    )
    assert len(frame) == 1
    return float(frame.iloc[0, 0])


def test_train_and_evaluate_writes_the_run_and_item_knn_wins(warehouse: str) -> None:
    with psycopg2.connect(warehouse) as conn:
        result = training.train_and_evaluate(conn, "run_1", START, END)
    conn.close()

    assert result["champion_model"] == "item_knn"
    assert result["n_test_users"] == 60 and result["n_validation_users"] == 60
    ml_runs = query(warehouse, "select * from ml.runs")
    assert len(ml_runs) == 1
    run = ml_runs.iloc[0]
    assert (run.run_id, run.status, run.champion_model) == ("run_1", "evaluated", "item_knn")
    assert run.eval_cutoff_at == CUTOFF and run.data_cutoff_at == END
    assert run.validation_cutoff_at == VALIDATION_CUTOFF
    assert run.data_interval_start == START and run.data_interval_end == END
    assert run.started_at <= run.finished_at
    # the gate: item_knn beats both baselines on the validation users (paired test), see champion_gate
    assert run.champion_reason.startswith("item_knn beats the baselines (z=")
    assert "vs popularity" in run.champion_reason and "vs repeat_purchase" in run.champion_reason
    assert "validation NDCG@10 over 60 users: item_knn " in run.champion_reason
    assert json.loads(run.champion_params) == result["champion_params"]

    # the search: every model's configured params, then its grid; one selected trial per model, the best one
    search = query(warehouse, "select * from ml.model_search where run_id = 'run_1'")
    names = [model.name for model in registry.default_models()]
    assert set(search.model_name) == set(names)
    selected = search[search.is_selected]
    assert sorted(selected.model_name) == sorted(names)
    best = search.groupby("model_name").ndcg.max()
    assert (selected.set_index("model_name").ndcg == best[selected.model_name].to_numpy()).all()
    assert len(search) > len(names), "grid points were tried"

    knn, popularity = (
        metric(warehouse, "run_1", "item_knn", "ndcg", 10),
        metric(warehouse, "run_1", "popularity", "ndcg", 10),
    )
    assert knn > popularity
    assert result["metrics"]["item_knn"] == pytest.approx(knn, abs=1e-6)

    # known answers of the planted clusters (see the module docstring)
    assert metric(warehouse, "run_1", "item_knn", "hit_rate", 10) == 1.0
    assert metric(warehouse, "run_1", "item_knn", "hit_rate", 10, "lifecycle_stage=active") == 1.0
    # segments: the A users are lifecycle_stage=active and spending_power=low, all of them returning customers
    active = metric(warehouse, "run_1", "popularity", "hit_rate", 10, "lifecycle_stage=active")
    assert active < 1.0 and active == metric(warehouse, "run_1", "popularity", "hit_rate", 10, "spending_power=low")
    loyal = metric(warehouse, "run_1", "popularity", "hit_rate", 10, "lifecycle_stage=loyal")
    assert metric(warehouse, "run_1", "popularity", "hit_rate", 10) == pytest.approx((active + loyal) / 2)
    assert metric(warehouse, "run_1", "popularity", "hit_rate", 10, "user_type=returning") == pytest.approx(
        (active + loyal) / 2
    )
    # each test user bought exactly one item: recall@k equals hit rate@k, precision@10 is hits / 10
    assert metric(warehouse, "run_1", "item_knn", "recall", 10) == 1.0
    assert metric(warehouse, "run_1", "item_knn", "precision", 10) == pytest.approx(0.1)
    # popularity shows the same 10 of the 20 items to everyone; item-KNN keeps every user inside their cluster
    assert metric(warehouse, "run_1", "popularity", "coverage", 10) == pytest.approx(10 / 20)
    assert metric(warehouse, "run_1", "item_knn", "diversity", 5) == 0.0
    assert metric(warehouse, "run_1", "popularity", "diversity", 5) > 0.0

    evaluations = query(warehouse, "select * from ml.model_evaluations where segment = 'all'")
    per_model = evaluations.groupby("model_name").metric.agg(set)
    ranking = {"precision", "recall", "ndcg", "hit_rate", "f1", "map", "coverage", "diversity", "novelty"}
    assert set(per_model.index) == set(names) and all(ranking <= metrics for metrics in per_model)
    assert {"roc_auc"} <= per_model["neural_ranker"] & per_model["lgbm_ranker"] and {"rmse", "mae"} <= per_model["svd"]
    assert set(evaluations.k) == {0, 5, 10, 20}
    assert set(evaluations[evaluations.k == 0].metric) == {"roc_auc", "rmse", "mae"}
    # no test purchase is a repurchase in this shop: for_you and discover are scored, buy_again has no truth
    placed = {"placement_for_you", "placement_discover"}
    assert set(evaluations.variant) == {"all_items", "new_items", "business_rules", "reranked"} | placed
    assert set(evaluations[evaluations.variant.isin(placed)].model_name) == set(names), "every model per placement"
    # every test purchase is of an item never bought before: for_you and discover share their truth
    assert metric(warehouse, "run_1", "item_knn", "hit_rate", 10, variant="placement_discover") == 1.0
    # a champion per placement: buy_again, with nothing to choose on, keeps its natural baseline
    shelves = json.loads(run.placement_champions)
    assert {name: shelf["model"] for name, shelf in shelves.items()} == {
        "for_you": "item_knn",
        "discover": "item_knn",
        "buy_again": "repeat_purchase",
    }
    assert shelves["buy_again"]["reason"].startswith("no purchases in the validation window to choose on")
    assert (
        shelves["for_you"]["reason"] == run.champion_reason and result["placement_champions"]["discover"] == "item_knn"
    )
    layered = evaluations[evaluations.variant.isin(["business_rules", "reranked"])]
    assert set(layered.model_name) == {"item_knn"}, "only the champion is evaluated after the layers"
    segments = query(warehouse, "select distinct segment from ml.model_evaluations")
    assert set(segments.segment) == {
        "all",
        "lifecycle_stage=active",
        "lifecycle_stage=loyal",
        "spending_power=low",
        "spending_power=high",
        "user_type=returning",
    }


def test_rerunning_a_run_replaces_its_rows(warehouse: str) -> None:
    training.train_and_evaluate(warehouse, "run_1", START, END)  # a DSN string works too
    first = query(warehouse, "select * from ml.model_evaluations order by 1, 2, 3, 4, 5, 6")
    training.train_and_evaluate(warehouse, "run_1", START, END)
    second = query(warehouse, "select * from ml.model_evaluations order by 1, 2, 3, 4, 5, 6")
    pd.testing.assert_frame_equal(first, second)
    training.train_and_evaluate(warehouse, "run_2", START, END)
    counts = query(warehouse, "select run_id, count(*) as n from ml.model_evaluations group by run_id order by run_id")
    assert counts.n.tolist() == [len(first), len(first)]
    assert query(warehouse, "select count(*) as n from ml.runs").n[0] == 2

    publishing.generate_recommendations(warehouse, "run_1", END, n=5)
    first = query(warehouse, "select * from ml.recommendations order by user_id, placement, item_rank")
    result = publishing.generate_recommendations(warehouse, "run_1", END, n=5)
    second = query(warehouse, "select * from ml.recommendations order by user_id, placement, item_rank")
    pd.testing.assert_frame_equal(first, second)
    for table, key in (
        ("similar_items", "similar_items"),
        ("cold_start_recommendations", "cold_start_recommendations"),
    ):
        assert query(warehouse, f"select count(*) as n from ml.{table}").n[0] == result[key]


def test_generate_recommendations_writes_lists_reasons_and_cold_start(warehouse: str) -> None:
    training.train_and_evaluate(warehouse, "run_1", START, END)
    result = publishing.generate_recommendations(warehouse, "run_1", END, n=5, batch_size=7)

    users = len(A_USERS) + len(B_USERS) + len(EXTRA_USERS)
    recs = query(warehouse, "select * from ml.recommendations where run_id = 'run_1' and placement = 'for_you'")
    assert result["placements"]["for_you"] == len(recs) == users * 5
    assert result["users"] == users and result["personalized_users"] == users - 2  # all but optout and cold
    ranks = recs.groupby("user_id").item_rank.agg(lambda rank: sorted(rank) == [1, 2, 3, 4, 5])
    assert len(ranks) == users and ranks.all()
    assert not recs.duplicated(["user_id", "item_id"]).any()
    assert not recs.item_id.isin(OUT_OF_STOCK).any(), "only in-stock items are recommended"
    assert (recs.generated_at == END).all()

    def user_rows(user_id: str) -> pd.DataFrame:
        return recs[recs.user_id == user_id].sort_values("item_rank")

    top = user_rows("ua00").iloc[0]
    assert top.item_id.startswith("a") and top.reason_code == "similar_to_history" and top.model_name == "item_knn"
    assert top.reason_text.startswith("Because you ") and "Item a0" in top.reason_text
    assert user_rows("viewer").iloc[0].reason_text.startswith("Because you viewed Item a00")
    assert user_rows("buyer").iloc[0].reason_text == "Because you bought Item a02"
    assert user_rows("carter").iloc[0].reason_text == "Because you added Item a03 to your cart"
    # ua00 saw a00..a03 and bought a05: the top 4 are cluster-A items, seen ones included (item-KNN keeps
    # seen items as candidates, scored by their neighbours in the history), then popularity fill
    top4 = set(user_rows("ua00").item_id.iloc[:4])
    assert all(item.startswith("a") for item in top4) and top4 & {"a00", "a01", "a02", "a03", "a05"}
    fill = recs[recs.model_name == "popularity"]
    assert set(fill.reason_code) <= {"popular", "popular_segment", "buy_again"}
    assert (fill[fill.reason_code == "popular"].reason_text == "Popular in the last 30 days").all()
    # the published contract (the marts_and_recs gate checks it before publish): scores never increase with rank
    ordered = recs.sort_values(["user_id", "item_rank"])
    assert (ordered.groupby("user_id").score.diff().dropna() <= 0).all()

    loner = user_rows("loner")  # history without neighbours: a pure popularity list with popularity scores
    assert (loner.model_name == "popularity").all() and (loner.score > 0).all()
    # loner (index 63, male, no age band) is in the published segment unknown|male, whose list these items top
    assert (loner.reason_code == "popular_segment").all() and (loner.reason_text == "Popular with male shoppers").all()

    cold_start = query(warehouse, "select * from ml.cold_start_recommendations where run_id = 'run_1'")
    popular_all = cold_start[cold_start.segment_key == "all"].sort_values("item_rank")
    for user_id in ("cold", "optout"):  # no history / opted out: the global popularity list
        rows = user_rows(user_id)
        assert (rows.model_name == "popularity").all()
        assert rows.item_id.tolist() == popular_all.item_id.iloc[:5].tolist()
        np.testing.assert_allclose(rows.score, popular_all.score.iloc[:5])
        assert (rows.score > 0).all()
    # cold is male without an age band; an opted-out user's attributes do not word their reasons
    assert (user_rows("cold").reason_text == "Popular with male shoppers").all()
    assert (user_rows("optout").reason_code == "popular").all()
    assert set(cold_start.segment_key) == {
        "all",
        "25-34|female",
        "25-34|male",
        "35-44|female",
        "35-44|male",
        "unknown|female",
        "unknown|male",
    }
    assert (cold_start.groupby("segment_key").size() == 18).all(), "min(20, 18 in-stock items) per segment"
    assert not cold_start.item_id.isin(OUT_OF_STOCK).any()
    assert popular_all.item_id.iloc[0].startswith("b")
    young = cold_start[cold_start.segment_key == "25-34|female"].sort_values("item_rank")
    assert young.item_id.iloc[:9].str.startswith("a").all(), "the A users' segment prefers cluster A"

    similar = query(warehouse, "select * from ml.similar_items where run_id = 'run_1'")
    a00 = similar[similar.item_id == "a00"].sort_values("item_rank")
    assert a00.item_rank.tolist() == list(range(1, 9)) and set(a00.similar_item_id) == set(A_ITEMS[1:9])
    assert (a00.score.diff().dropna() <= 0).all()
    assert not similar.similar_item_id.isin(OUT_OF_STOCK).any()

    run = query(warehouse, "select status, champion_model from ml.runs where run_id = 'run_1'").iloc[0]
    assert (run.status, run.champion_model) == ("recommended", "item_knn")


def test_popularity_wins_when_everyone_rebuys_the_bestseller(empty_database: str) -> None:
    """If validation and test weeks are everybody buying b00, popularity (b00 first) wins and is published."""
    events = planted_events()
    events.loc[events.event_at >= VALIDATION_CUTOFF, "item_id"] = "b00"
    build_warehouse(empty_database, events)

    result = training.train_and_evaluate(empty_database, "run_1", START, END)
    knn = metric(empty_database, "run_1", "item_knn", "ndcg", 10)
    popularity = metric(empty_database, "run_1", "popularity", "ndcg", 10)
    assert popularity == 1.0 and knn < popularity
    # everybody bought b00 in the validation week: in the test week it is a repeat for all, new_items is empty
    variants = query(empty_database, "select distinct variant from ml.model_evaluations")
    assert set(variants.variant) == {
        "all_items",
        "business_rules",
        "reranked",
        "placement_for_you",
        "placement_buy_again",
    }
    # ... and every test purchase a repurchase (buy_again's truth). At the test cutoff B is not yet
    # repeat-purchase (15 of some 210 buyer-item pairs bought twice), so the rules keep the just-bought b00 off
    # for_you, but buy_again is where it belongs: repeat_purchase puts it, the latest purchase, first
    assert metric(empty_database, "run_1", "repeat_purchase", "ndcg", 10, variant="placement_buy_again") == 1.0
    # the rules remove b00 from the champion's lists: bought in the validation week, not a repeat-purchase category
    assert metric(empty_database, "run_1", "popularity", "hit_rate", 10, variant="business_rules") == 0.0
    # buy-again has b00 first for everyone too, now: it ties with popularity on the test week
    assert metric(empty_database, "run_1", "repeat_purchase", "ndcg", 10) == 1.0
    assert result["champion_model"] == "popularity"
    assert result["champion_reason"].startswith("popularity (baseline) is best; validation NDCG@10 over 60 users: ")
    # the gate scores served lists: the 15 B users who had bought b00 before the validation week cannot be
    # served it again (no repeat-purchase category yet), so 45 of 60 users are hit at rank 1
    assert ": popularity 0.7500, " in result["champion_reason"]

    publishing.generate_recommendations(empty_database, "run_1", END, n=3)
    recs = query(empty_database, "select * from ml.recommendations where placement = 'for_you'")
    assert (recs.model_name == "popularity").all()
    assert set(recs.reason_code) == {"buy_again", "popular_segment", "popular"}
    # everyone bought b00 on two different days: category B is now repeat-purchase, so b00 comes back, saying why
    top = recs[(recs.user_id == "ua00") & (recs.item_rank == 1)].iloc[0]
    assert (top.item_id, top.reason_code, top.reason_text) == ("b00", "buy_again", "You bought Item b00 before")
    optout = recs[recs.user_id == "optout"]
    assert (optout.reason_text == "Popular in the last 30 days").all(), "an opted-out user's data words nothing"
    # at the end B is repeat-purchase: ua00's buy_again shelf is b00 (bought twice, last), then its older A buys
    again = query(empty_database, "select * from ml.recommendations where placement = 'buy_again' order by item_rank")
    assert again[again.user_id == "ua00"].item_id.iloc[0] == "b00"
    assert not {"optout", "cold", "viewer", "carter", "loner"} & set(again.user_id), "nothing bought, or opted out"


def test_a_failed_step_is_recorded_and_raised(warehouse: str) -> None:
    with pytest.raises(LookupError, match="no champion"):
        publishing.generate_recommendations(warehouse, "never_evaluated", END)
    assert query(warehouse, "select status from ml.runs where run_id = 'never_evaluated'").status[0] == "failed"

    training.train_and_evaluate(warehouse, "run_1", START, END)
    before = query(warehouse, "select * from ml.runs where run_id = 'run_1'").iloc[0]
    with pytest.raises(ValueError, match="unknown champion"):
        publishing.generate_recommendations(warehouse, "run_1", END, model_name="no_such_model")
    after = query(warehouse, "select * from ml.runs where run_id = 'run_1'").iloc[0]
    assert after.status == "failed"
    assert (after.champion_model, after.champion_reason, after.started_at) == (
        before.champion_model,
        before.champion_reason,
        before.started_at,
    ), "a failed later step keeps what the evaluation recorded"
    assert query(warehouse, "select count(*) as n from ml.recommendations").n[0] == 0, "nothing half-written"


def test_no_test_purchases_keeps_the_popularity_baseline(warehouse: str) -> None:
    later = END + timedelta(days=30)  # the last 14 days before it have no events at all
    result = training.train_and_evaluate(warehouse, "run_late", later - timedelta(days=1), later)
    assert result["n_test_users"] == 0 and result["champion_model"] == "popularity"
    assert "no purchases in the validation window" in result["champion_reason"]
    assert query(warehouse, "select count(*) as n from ml.model_evaluations").n[0] == 0


def test_champion_gate() -> None:
    gate = selection.champion_gate
    baselines = ["popularity", "repeat_purchase"]
    ones, zeros = np.ones(50), np.zeros(50)
    noisy = np.tile([0.0, 1.0], 25)  # mean 0.5 with a large spread
    # a baseline that is best is published as is
    champion, reason = gate({"popularity": ones, "repeat_purchase": zeros, "als": noisy}, baselines, 10)
    assert champion == "popularity" and reason.startswith("popularity (baseline) is best; validation NDCG@10 over")
    # a model clearly better than both baselines on the same users is published
    better = gate({"popularity": zeros, "repeat_purchase": zeros + 0.1, "als": ones}, baselines, 10)
    assert better[0] == "als" and better[1].startswith("als beats the baselines (z=inf vs popularity, z=inf vs")
    # best on average but within the noise of a baseline: the best baseline is published
    als = noisy + np.tile([0.3, -0.25], 25)  # 0.025 better than repeat_purchase on average, z = 0.64
    close = gate({"popularity": zeros, "repeat_purchase": noisy, "als": als}, baselines, 10)
    assert close[0] == "repeat_purchase"
    assert close[1].startswith("als is best but not significantly better than every baseline (z=")
    assert "z=0.64 vs repeat_purchase; needs z > 1.645): publishing the best baseline repeat_purchase" in close[1]
    # ties keep the model listed first (the simpler one)
    assert gate({"popularity": ones, "repeat_purchase": ones, "als": ones}, baselines, 10)[0] == "popularity"
    # nothing to evaluate on: the first baseline
    empty = gate({"popularity": np.zeros(0), "repeat_purchase": np.zeros(0)}, baselines, 10)
    assert empty == (
        "popularity",
        "no purchases in the validation window to choose on; keeping the popularity baseline",
    )


def only_baselines() -> dict:
    config = registry.load_model_config()
    return config | {"models": {name: config["models"][name] for name in ("popularity", "repeat_purchase")}}


def test_new_items_variant_drops_prior_purchases_from_ranking_and_truth(empty_database: str) -> None:
    """A users re-buy what they bought before: buy-again hits them, new_items drops them."""
    events = planted_events()
    for cutoff in (VALIDATION_CUTOFF, CUTOFF):  # the validation and the test week
        rebuy = events.event_at.between(cutoff, cutoff + timedelta(days=7), inclusive="left") & events.user_id.isin(
            A_USERS
        )
        events.loc[rebuy, "item_id"] = [A_ITEMS[number % 9] for number in range(len(A_USERS))]  # touched[0]
    build_warehouse(empty_database, events)

    training.train_and_evaluate(empty_database, "run_1", START, END, config=only_baselines())
    # all_items: every A user's own purchase is first in their buy-again list
    assert metric(empty_database, "run_1", "repeat_purchase", "ndcg", 10, "lifecycle_stage=active") == 1.0
    # new_items: the A users' truth is empty (all repeats), so only the B users are evaluated
    active = query(
        empty_database,
        "select count(*) as n from ml.model_evaluations where variant = 'new_items' "
        "and segment = 'lifecycle_stage=active'",
    )
    assert active.n[0] == 0
    # a B user's five own purchases leave the ranking: the five B items they never bought come first,
    # and the test purchase is one of them
    assert metric(empty_database, "run_1", "repeat_purchase", "hit_rate", 5, variant="new_items") == 1.0
    assert metric(empty_database, "run_1", "repeat_purchase", "precision", 5, variant="new_items") == pytest.approx(0.2)
    assert metric(empty_database, "run_1", "repeat_purchase", "recall", 5, variant="new_items") == 1.0


def test_the_champion_is_chosen_on_the_lists_as_served(empty_database: str) -> None:
    """Buy-again wins as trained, but the rules take its lists away: the gate must not publish it.

    The A users re-buy their first purchase in the validation and the test
    week. Nobody re-bought anything before the validation cutoff, so no
    category is repeat-purchase, and the rule "no purchase of the last 180
    days again" removes every item of repeat_purchase's lists: served, they
    are popularity fill, exactly popularity's lists. As trained,
    repeat_purchase hits every A user (NDCG@10 of 1 for them); served, it ties
    with popularity, and a tie keeps the baseline listed first. The champion
    must be popularity, and what is published must carry its name.
    """
    events = planted_events()
    for cutoff in (VALIDATION_CUTOFF, CUTOFF):
        rebuy = events.event_at.between(cutoff, cutoff + timedelta(days=7), inclusive="left") & events.user_id.isin(
            A_USERS
        )
        events.loc[rebuy, "item_id"] = [A_ITEMS[number % 9] for number in range(len(A_USERS))]  # touched[0]
    build_warehouse(empty_database, events)

    result = training.train_and_evaluate(empty_database, "run_1", START, END, config=only_baselines())
    search = query(empty_database, "select * from ml.model_search where is_selected").set_index("model_name")
    assert search.loc["repeat_purchase", "ndcg"] > search.loc["popularity", "ndcg"] + 0.4, "as trained, buy-again wins"
    assert search.loc["repeat_purchase", "ndcg_served"] == pytest.approx(search.loc["popularity", "ndcg_served"])
    assert result["champion_model"] == "popularity"
    assert result["champion_reason"].startswith("popularity (baseline) is best")

    publishing.generate_recommendations(empty_database, "run_1", END, n=5)
    published = query(empty_database, "select distinct model_name from ml.recommendations where placement = 'for_you'")
    assert set(published.model_name) == {"popularity"}


def test_a_shop_where_everyone_has_events_gets_its_lists(warehouse: str) -> None:
    """An invoice export's users are its buyers: no user without events, so no cold-start list is served."""
    with psycopg2.connect(warehouse) as conn, conn.cursor() as cursor:
        cursor.execute("delete from analytics.dim_users where user_id = 'cold'")
    conn.close()
    training.train_and_evaluate(warehouse, "run_1", START, END)
    result = publishing.generate_recommendations(warehouse, "run_1", END, n=5, batch_size=7)
    recs = query(warehouse, "select * from ml.recommendations where run_id = 'run_1' and placement = 'for_you'")
    users = len(A_USERS) + len(B_USERS) + len(EXTRA_USERS) - 1
    assert result["cold_start_users"] == 0 and result["placements"]["for_you"] == len(recs) == users * 5
    assert recs.reason_text.notna().all() and not (recs.reason_code == "new_user_segment").any()


def test_the_search_is_bounded_by_a_trial_count_not_a_clock(warehouse: str, tmp_path, monkeypatch) -> None:
    """``max_search_trials = 12``: the 10 models' params, then the first 2 grid points (popularity's), every time."""
    text = (tmp_path / "models.toml").read_text().replace("max_search_trials = 40", "max_search_trials = 12")
    assert "search_budget_seconds" not in text
    (tmp_path / "models.toml").write_text(text)
    result = training.train_and_evaluate(warehouse, "run_1", START, END)
    trials = query(warehouse, "select model_name, params from ml.model_search order by trial")
    assert result["search_trials"] == len(trials) == 12
    assert trials.model_name.tolist()[10:] == ["popularity", "popularity"]
    assert [json.loads(params)["window_days"] for params in trials.params[10:]] == [7, 90]


def test_a_window_with_more_users_than_max_users_is_evaluated_on_a_seeded_sample(
    warehouse: str, tmp_path, monkeypatch
) -> None:
    """``max_users = 25`` of the 60 purchasers per window: 25 evaluated, the same sample and metrics every run."""
    text = (tmp_path / "models.toml").read_text().replace("max_users = 50000", "max_users = 25")
    (tmp_path / "models.toml").write_text(text)
    metrics = []
    for run_id in ("run_1", "run_2"):
        result = training.train_and_evaluate(warehouse, run_id, START, END)
        assert result["n_test_users"] == result["n_validation_users"] == 25
        metrics.append(result["metrics"])
    assert metrics[0] == metrics[1]


def test_a_shop_with_more_users_than_search_users_searches_on_a_seeded_sample(warehouse: str, tmp_path) -> None:
    """``search_users = 40`` of the 65 users with events: the search sees only the validation purchasers among
    those 40 (the same sample every run), the test window still scores all 60 purchasers, item-KNN still wins."""
    text = (tmp_path / "models.toml").read_text().replace("search_users = 200000", "search_users = 40")
    (tmp_path / "models.toml").write_text(text)
    searches = []
    for run_id in ("run_1", "run_2"):
        result = training.train_and_evaluate(warehouse, run_id, START, END)
        assert result["n_search_users"] == 40 and 0 < result["n_validation_users"] < 40
        assert result["n_test_users"] == 60 and result["champion_model"] == "item_knn"
        search = query(warehouse, "select trial, ndcg_served from ml.model_search where run_id = %s", (run_id,))
        searches.append(search.sort_values("trial").reset_index(drop=True))
    pd.testing.assert_frame_equal(searches[0], searches[1])


@pytest.mark.parametrize(
    "champion", ["repeat_purchase", "user_knn", "als", "svd", "neural_ranker", "lgbm_ranker", "sequence", "content"]
)
def test_any_champion_can_be_published_with_its_reasons(warehouse: str, champion: str) -> None:
    training.train_and_evaluate(warehouse, "run_1", START, END)
    result = publishing.generate_recommendations(warehouse, "run_1", END, n=5, batch_size=7, model_name=champion)
    users = len(A_USERS) + len(B_USERS) + len(EXTRA_USERS)
    recs = query(warehouse, "select * from ml.recommendations where run_id = 'run_1' and placement = 'for_you'")
    assert result["placements"]["for_you"] == len(recs) == users * 5 and result["champion_model"] == champion
    assert not recs.duplicated(["user_id", "item_id"]).any() and not recs.item_id.isin(OUT_OF_STOCK).any()
    ordered = recs.sort_values(["user_id", "item_rank"])
    assert (ordered.groupby("user_id").score.diff().dropna() <= 0).all(), "scores never increase with rank"
    assert set(recs.model_name) <= {champion, "popularity"}
    assert_grounded(warehouse, recs)
    own = recs[recs.model_name == champion]
    grounded = {"buy_again", "similar_to_history", "also_bought", "category_interest"}
    assert set(own.reason_code) <= grounded | {publishing.REASON_CODES[champion]}
    for user_id in ("cold", "optout"):
        assert (recs[recs.user_id == user_id].model_name == "popularity").all()

    def user_rows(user_id: str) -> pd.DataFrame:
        return recs[recs.user_id == user_id].sort_values("item_rank")

    if champion == "repeat_purchase":
        # nobody bought an item twice, so no category is repeat-purchase: every purchase of the last 180 days
        # leaves the list and repeat_purchase has nothing left to say; popularity fills every list
        assert (recs.model_name == "popularity").all() and not (recs.reason_code == "buy_again").any()
        ua00 = set(user_rows("ua00").item_id)
        assert not ua00 & {"a00", "a05", "a07"}, "ua00's purchases are not recommended again"
    else:
        assert (recs.model_name == champion).any()
    if champion == "user_knn":
        assert user_rows("ua00").item_id.str.startswith("a").iloc[:4].all(), "neighbours of an A user are A users"
    elif champion == "sequence":
        assert user_rows("ua00").item_id.str.startswith("a").iloc[:4].all(), "in every sequence A items follow A items"
    elif champion == "svd":
        assert set(own.user_id) <= set(A_USERS + B_USERS), "only users who rated something"
    elif champion == "als":
        assert result["personalized_users"] == users - 2


def test_consumables_are_recommended_again_as_buy_again(warehouse: str, tmp_path, monkeypatch) -> None:
    """With category A declared repeat-purchase, repeat_purchase re-recommends A purchases saying so."""
    text = (tmp_path / "business_rules.toml").read_text().replace("\ncategories = []", '\ncategories = ["A"]')
    (tmp_path / "business_rules.toml").write_text(text)
    training.train_and_evaluate(warehouse, "run_1", START, END)
    publishing.generate_recommendations(warehouse, "run_1", END, n=5, model_name="repeat_purchase")
    recs = query(warehouse, "select * from ml.recommendations where run_id = 'run_1' and placement = 'for_you'")
    assert_grounded(warehouse, recs)
    ua00 = recs[recs.user_id == "ua00"].sort_values("item_rank")
    # ua00 bought a00 (19 days ago), a07 (10) and a05 (3): the more recent purchases first, then popularity
    assert ua00.item_id.tolist()[:3] == ["a05", "a07", "a00"] and (ua00.model_name.iloc[3:] == "popularity").all()
    assert (ua00.reason_code.iloc[:3] == "buy_again").all()
    assert ua00.reason_text.iloc[0] == "You bought Item a05 before"
    # B users' purchases (category B is not repeat-purchase) are still excluded
    ub00 = recs[recs.user_id == "ub00"]
    bought = query(
        warehouse, "select item_id from analytics.fct_interactions where user_id = 'ub00' and event_type = 'purchase'"
    )
    assert not ub00.item_id.isin(bought.item_id).any()


def assert_grounded(dsn: str, recs: pd.DataFrame) -> None:
    """Every reason naming a history item names one the user really bought / viewed / carted."""
    events = query(dsn, "select user_id, item_id, event_type from analytics.fct_interactions")
    done = set(zip(events.user_id, events.item_id, events.event_type, strict=True))
    patterns = {
        "purchase": r"^Because you bought Item (\w+)$",
        "view": r"^Because you viewed Item (\w+)$",
        "cart": r"^Because you added Item (\w+) to your cart$",
    }
    checked = 0
    for event_type, pattern in patterns.items():  # three reason forms
        named = recs.reason_text.str.extract(pattern)[0]
        rows = recs[named.notna()]
        checked += len(rows)
        assert (rows.reason_code == "similar_to_history").all()
        assert all((user, item, event_type) in done for user, item in zip(rows.user_id, named.dropna(), strict=True))
    again = recs[recs.reason_code == "buy_again"]
    assert all((user, item, "purchase") in done for user, item in zip(again.user_id, again.item_id, strict=True))
    assert (again.reason_text == "You bought Item " + again.item_id + " before").all()
    also = recs[recs.reason_code == "also_bought"]
    viewed = also.reason_text.str.extract(r"^People who viewed Item (\w+) also bought it$")[0]
    assert viewed.notna().all()
    assert all((user, item, "view") in done for user, item in zip(also.user_id, viewed, strict=True))
    assert checked == (recs.reason_code == "similar_to_history").sum()


def test_segments_smaller_than_k_are_suppressed(warehouse: str) -> None:
    config = registry.load_model_config()
    config["privacy"] = {"min_segment_users": 16}  # A and B users: 30 each; age band x gender: 15 each, unknown: 3
    training.train_and_evaluate(warehouse, "run_1", START, END, config=config)
    publishing.generate_recommendations(warehouse, "run_1", END, n=5, config=config)
    segments = set(query(warehouse, "select distinct segment from ml.model_evaluations").segment)
    assert "lifecycle_stage=active" in segments and "spending_power=high" in segments
    cold_start = set(query(warehouse, "select distinct segment_key from ml.cold_start_recommendations").segment_key)
    assert cold_start == {"all"}, "every age band x gender segment has fewer than 16 users"

    config["privacy"] = {"min_segment_users": 31}
    training.train_and_evaluate(warehouse, "run_1", START, END, config=config)
    segments = set(query(warehouse, "select distinct segment from ml.model_evaluations").segment)
    assert segments == {"all", "user_type=returning"}, "only the 60 returning test users form a large segment"


def evaluation(dsn: str, run_id: str, variant: str) -> pd.Series:
    frame = query(
        dsn,
        "select metric, k, metric_value from ml.model_evaluations where run_id = %s and variant = %s "
        "and segment = 'all' and model_name = 'item_knn'",
        (run_id, variant),
    )
    return frame.set_index(["metric", "k"]).metric_value.sort_index()


def test_the_champion_is_evaluated_after_the_rules_and_the_rerank(warehouse: str) -> None:
    planted = rules.load_business_rules()
    training.train_and_evaluate(warehouse, "run_0", START, END, rules=replace(planted, diversity_strength=0.0))
    training.train_and_evaluate(warehouse, "run_5", START, END, rules=replace(planted, diversity_strength=0.5))
    off, rules_only, reranked = (
        evaluation(warehouse, "run_0", "reranked"),
        evaluation(warehouse, "run_5", "business_rules"),
        evaluation(warehouse, "run_5", "reranked"),
    )
    pd.testing.assert_series_equal(off, rules_only, check_names=False)  # strength 0: lists unchanged
    # half the top 5s hold one cluster only: the re-rank brings the other one into every list, at a cost
    assert rules_only[("category_coverage", 5)] == 1.5 and reranked[("category_coverage", 5)] == 2.0
    assert rules_only[("diversity", 5)] < reranked[("diversity", 5)]
    assert reranked[("ndcg", 5)] < rules_only[("ndcg", 5)] and reranked[("hit_rate", 10)] == 1.0
    before = evaluation(warehouse, "run_5", "all_items")
    assert ("category_coverage", 10) in before.index and ("ndcg", 10) in before.index


def test_the_challengers_lists_are_written_beside_the_champions(warehouse: str) -> None:
    """item_knn is the champion; popularity, the challenger, recommends the dominant B items to everybody."""
    training.train_and_evaluate(warehouse, "run_1", START, END)
    publishing.generate_recommendations(warehouse, "run_1", END, n=5)
    champion = query(warehouse, "select * from ml.recommendations where run_id = 'run_1' and placement = 'for_you'")
    result = challenger.recommend_challenger(warehouse, "run_1", END, "popularity", n=5)

    users = len(A_USERS) + len(B_USERS) + len(EXTRA_USERS)
    lists = query(warehouse, "select * from ml.challenger_recommendations where run_id = 'run_1'")
    assert result["challenger_recommendations"] == len(lists) == users * 5
    assert set(lists.model_name) == {"popularity"}
    # the lists the one definition of serving makes for popularity with the parameters the run chose for it
    config = registry.load_model_config()
    with psycopg2.connect(warehouse) as conn:
        params = challenger.selected_params(conn, "run_1", "popularity")
    conn.close()
    assert params is not None
    config["models"]["popularity"]["params"] = params
    publishing.generate_recommendations(warehouse, "run_2", END, n=5, model_name="popularity", config=config)
    popular = query(warehouse, "select * from ml.recommendations where run_id = 'run_2' and placement = 'for_you'")

    def by_user(frame: pd.DataFrame) -> dict:
        return frame.sort_values("item_rank").groupby("user_id").item_id.agg(list).to_dict()

    assert by_user(lists) == by_user(popular)
    assert by_user(lists)["ua00"] != by_user(champion)["ua00"]  # the champion gives ua00 cluster-A items
    # the champion's lists and the run are as they were; nothing of the shadow run is left
    after = query(warehouse, "select * from ml.recommendations where run_id = 'run_1' and placement = 'for_you'")
    assert (
        after.sort_values(["user_id", "item_rank"]).item_id.tolist()
        == champion.sort_values(["user_id", "item_rank"]).item_id.tolist()
    )
    shadow = challenger.shadow_run_id("run_1", "popularity")
    assert query(warehouse, "select count(*) as n from ml.runs where run_id = %s", (shadow,)).n.iloc[0] == 0
    assert (
        query(warehouse, "select champion_model from ml.runs where run_id = 'run_1'").champion_model.iloc[0]
        == "item_knn"
    )
    # writing again replaces the rows
    assert challenger.recommend_challenger(warehouse, "run_1", END, "popularity", n=5) == result
    # an incremental run the next day serves the challenger with the parameters its full run chose
    with psycopg2.connect(warehouse) as conn:
        schedule.carry_champion(conn, "run_next", END, END + timedelta(days=1))
        assert challenger.selected_params(conn, "run_next", "popularity") == params
    conn.close()


def test_a_new_item_reaches_lists_only_through_its_content(empty_database: str) -> None:
    """``a10`` is listed 20 days before the end (after the A items) and nobody touches it before the test
    week, where ua00-ua09 buy it instead of their planned item: it is the window's one first-sold item and
    its one new catalogue item. The content model matches it to the A users' history (category A, its
    price band) ahead of every B item, so it is in their top 20 (the 11 A items come first); popularity
    and buy-again rank it last of the 21 items (no events), so they never list it."""
    events = planted_events()
    buyers = events.event_at.ge(CUTOFF) & events.user_id.isin(A_USERS[:10])
    events.loc[buyers, "item_id"] = "a10"
    build_warehouse(empty_database, events)
    new_item = pd.DataFrame(
        {"item_id": ["a10"], "item_name": ["Item a10"], "category": ["A"], "is_in_stock": [True], "price": [10]}
    ).assign(created_at=END - timedelta(days=20))
    with psycopg2.connect(empty_database) as conn:
        frames.copy_frame(conn, "analytics.dim_items", new_item)
    conn.close()
    config = only_baselines()
    config["models"]["content"] = {"params": {"popularity_weight": 0.1}}

    training.train_and_evaluate(empty_database, "run_1", START, END, config=config)
    rows = query(empty_database, "select distinct variant from ml.model_evaluations where variant = 'new_catalogue'")
    assert len(rows) == 1
    assert metric(empty_database, "run_1", "content", "hit_rate", 20, variant="new_catalogue") == 1.0
    assert metric(empty_database, "run_1", "content", "recall", 20, variant="new_catalogue") == 1.0
    assert metric(empty_database, "run_1", "content", "new_item_coverage", 20, variant="new_catalogue") == 1.0
    for baseline in ("popularity", "repeat_purchase"):  # two baselines: a10 is 21st of 21 in both
        assert metric(empty_database, "run_1", baseline, "hit_rate", 20, variant="new_catalogue") == 0.0
        assert metric(empty_database, "run_1", baseline, "new_item_coverage", 20, variant="new_catalogue") == 0.0


def test_each_placement_lists_only_what_it_may_show(warehouse: str, tmp_path) -> None:
    """With category B declared repeat-purchase, ub00 (who bought b00-b04, then b08, then b06 two days ago) gets:

    * ``buy_again``: exactly their purchases, most recent first (``repeat_purchase``, the shelf's champion:
      nobody rebuys in the windows, so its baseline is kept): b06, b08, b04, b03, b02;
    * ``discover``: never one of their purchases; item-KNN ranks the two unbought in-stock B items b05 and b07
      first (b09 is out of stock), then the popularity fill skips everything they bought.
    """
    text = (tmp_path / "business_rules.toml").read_text().replace("\ncategories = []", '\ncategories = ["B"]')
    (tmp_path / "business_rules.toml").write_text(text)
    training.train_and_evaluate(warehouse, "run_1", START, END)
    result = publishing.generate_recommendations(warehouse, "run_1", END, n=5, batch_size=7)
    assert result["placement_champions"] == {
        "for_you": "item_knn",
        "discover": "item_knn",
        "buy_again": "repeat_purchase",
    }
    recs = query(warehouse, "select * from ml.recommendations where run_id = 'run_1' order by item_rank")
    assert sum(result["placements"].values()) == result["recommendations"] == len(recs)
    bought = query(
        warehouse, "select distinct user_id, item_id from analytics.fct_interactions where event_type = 'purchase'"
    )
    pairs = set(zip(bought.user_id, bought.item_id, strict=True))

    def shelf(name: str) -> pd.DataFrame:
        return recs[recs.placement == name]

    discover, again = shelf("discover"), shelf("buy_again")
    assert not any(pair in pairs for pair in zip(discover.user_id, discover.item_id, strict=True))
    assert all(pair in pairs for pair in zip(again.user_id, again.item_id, strict=True))
    assert again[again.user_id == "ub00"].item_id.tolist() == ["b06", "b08", "b04", "b03", "b02"]
    assert (again[again.user_id == "ub00"].reason_text.iloc[0]) == "You bought Item b06 before"
    assert set(discover[discover.user_id == "ub00"].item_id.iloc[:2]) == {"b05", "b07"}
    # every user has for_you and discover lists of 5; buy_again every buyer who allows personalization (not
    # optout), recent purchases outside repeat-purchase categories included: ua00 bought a05, a07, a00
    users = len(A_USERS) + len(B_USERS) + len(EXTRA_USERS)
    assert result["placements"]["for_you"] == result["placements"]["discover"] == users * 5
    assert set(again.user_id) == set(A_USERS) | set(B_USERS) | {"buyer"}
    assert again[again.user_id == "ua00"].item_id.tolist() == ["a05", "a07", "a00"]
    assert not again.item_id.isin(OUT_OF_STOCK).any() and not discover.item_id.isin(OUT_OF_STOCK).any()


def test_a_warehouse_and_a_run_from_before_placements(warehouse: str) -> None:
    """ml.recommendations without placement gets it (old rows: for_you) and the new key; a run without
    placement_champions publishes its champion on for_you and discover, repeat_purchase on buy_again."""
    with psycopg2.connect(warehouse) as conn, conn.cursor() as cursor:
        cursor.execute(
            "create schema ml; create table ml.recommendations (run_id text not null, user_id text not null,"
            " item_rank integer not null, item_id text not null, score double precision, model_name text not null,"
            " reason_code text not null, reason_text text, generated_at timestamptz not null,"
            " primary key (run_id, user_id, item_rank));"
            "insert into ml.recommendations values ('old', 'ua00', 1, 'a00', 1.0, 'popularity', 'popular', 'x', now())"
        )
    conn.close()
    training.train_and_evaluate(warehouse, "run_1", START, END)
    with psycopg2.connect(warehouse) as conn, conn.cursor() as cursor:
        cursor.execute("update ml.runs set placement_champions = null")
    conn.close()
    result = publishing.generate_recommendations(warehouse, "run_1", END, n=5)
    assert result["placement_champions"] == {
        "for_you": "item_knn",
        "discover": "item_knn",
        "buy_again": "repeat_purchase",
    }
    assert query(warehouse, "select placement from ml.recommendations where run_id = 'old'").placement.tolist() == [
        "for_you"
    ]
    key = query(
        warehouse,
        "select attribute.attname from pg_index as pk join pg_attribute as attribute"
        " on attribute.attrelid = pk.indrelid and attribute.attnum = any(pk.indkey)"
        " where pk.indrelid = 'ml.recommendations'::regclass and pk.indisprimary",
    )
    assert set(key.attname) == {"run_id", "user_id", "placement", "item_rank"}
