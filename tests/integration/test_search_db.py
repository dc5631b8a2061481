"""``recsys.usecases.search`` against real Postgres: a hand-computed tiny warehouse, then the simulated shop.

The tiny warehouse (as of 2026-03-01; "-30d" events decay to half):

* items ``k1`` Hearthly, ``k2`` Kettleby, ``k3`` Lumen (Home > Kitchen > Kettles, prices 10, 20,
  30: price bands 0, 0.5, 1) and ``l1`` Lumen lamp (Home > Decor > Lamps, band 0);
  ``k4`` is a Kettles item listed after as_of;
* ``u1`` bought ``k3`` (-30d: weight 2.5) and viewed ``l1`` (-30d: 0.5), searched "lumen" before;
  ``u2`` viewed ``k1`` three times and ``u3`` bought ``k2`` (both in the last days);
  ``u4`` has ``u1``'s history but opted out of personalization;
* similar items: ``k3 -> k1`` 0.4, ``l1 -> k1`` 0.2.

Popularity (last 30 days, ln(1 + event weights)): k1 ln 4, k2 ln 6, k3 ln 6 (u1's and u4's
purchases at -30d count: ln 11), l1 ln 3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg2
import pytest

from recsys.db import frames, runs
from recsys.db.warehouse import connect
from recsys.dev.local import BIN, environment
from recsys.dev.simulate import simulate
from recsys.ingest import load
from recsys.models import registry
from recsys.usecases import search, search_features

AS_OF = datetime(2026, 3, 1, tzinfo=UTC)
RECSYS = str(Path(sys.executable).parent / "recsys")
DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"

#: the dbt models the search reads, created from their contracts (tests/conftest.py)
TABLES = (
    "dim_items",
    "dim_users",
    "fct_interactions",
    "fct_searches",
    "item_search_tokens",
    "user_search_interests",
    "user_id_map",
    "similar_items",
)
TINY_ROWS = """
insert into analytics.dim_items
    (item_id, item_name, category, category_path, brand, price, is_in_stock, created_at) values
    ('k1', 'Hearthly Kettles', 'Home', 'Home > Kitchen > Kettles', 'Hearthly', 10, true, null),
    ('k2', 'Kettleby Kettles', 'Home', 'Home > Kitchen > Kettles', 'Kettleby', 20, true, null),
    ('k3', 'Lumen Kettles', 'Home', 'Home > Kitchen > Kettles', 'Lumen', 30, true, null),
    ('l1', 'Lumen Lamps', 'Home', 'Home > Decor > Lamps', 'Lumen', 40, true, null),
    ('k4', 'Acme Kettles', 'Home', 'Home > Kitchen > Kettles', 'Acme', 50, true, '2026-03-02');
insert into analytics.item_search_tokens (item_id, token)
select item_id, unnest(string_to_array(tokens, ' ')) from (values
    ('k1', 'hearthly kettle home kitchen'),
    ('k2', 'kettleby kettle home kitchen'),
    ('k3', 'lumen kettle home kitchen'),
    ('l1', 'lumen lamp home decor'),
    ('k4', 'acme kettle home kitchen')) as tokens (item_id, tokens);
insert into analytics.dim_users (user_id, is_personalization_allowed) values
    ('u1', true), ('u2', true), ('u3', true), ('u4', false);
insert into identity.user_id_map (shop_user_id, user_id) values ('U1', 'u1'), ('U2', 'u2'), ('U3', 'u3'), ('U4', 'u4');
insert into analytics.fct_interactions (user_id, item_id, event_type, event_at, session_id) values
    ('u1', 'k3', 'purchase', '2026-01-30', 's1'), ('u1', 'l1', 'view', '2026-01-30', 's1'),
    ('u4', 'k3', 'purchase', '2026-01-30', 's4'), ('u4', 'l1', 'view', '2026-01-30', 's4'),
    ('u2', 'k1', 'view', '2026-02-28', 's2'), ('u2', 'k1', 'view', '2026-02-28', 's2'),
    ('u2', 'k1', 'view', '2026-02-28', 's2'), ('u3', 'k2', 'purchase', '2026-02-27', 's3'),
    ('u3', 'k1', 'view', '2026-03-05', 's5');
insert into analytics.fct_searches (search_id, user_id, query, searched_at, session_id) values
    ('q0', 'u1', 'lumen', '2026-01-30', 's1');
insert into analytics.user_search_interests (user_id, term, weight) values
    ('u1', 'term:lumen', 1.0), ('u1', 'category:Home', 0.5);
insert into recs.similar_items (item_id, similar_item_id, score) values ('k3', 'k1', 0.4), ('l1', 'k1', 0.2);
"""


def publish_identity_map(url: str) -> None:
    """Copy ``identity.user_id_map`` to the map serving reads, as a publish leaves it."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("create table identity.published_user_id_map as select * from identity.user_id_map")
    conn.close()


@pytest.fixture(scope="module")
def tiny_template(fresh_database, tmp_path_factory, contract_tables) -> str:
    """The hand-written rows in the contract tables, and the tokenizer function the dbt project defines."""
    database = fresh_database()
    contract_tables(database, *TABLES)
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute(TINY_ROWS)
    conn.close()
    publish_identity_map(database)
    subprocess.run(
        [str(BIN / "dbt"), "run-operation", "install_search_tokens", "--project-dir", str(DBT_PROJECT)]
        + ["--target-path", str(tmp_path_factory.mktemp("target"))],
        env=environment(database, airflow_home=tmp_path_factory.mktemp("airflow")),
        check=True,
        capture_output=True,
    )
    return database


@pytest.fixture
def tiny(fresh_database, tiny_template: str) -> str:
    """A copy of :func:`tiny_template` for one test: the tests write to it (one dbt call for them all)."""
    return fresh_database(template=tiny_template)


def features(url: str, requests: list[tuple[str, str | None, str]], interests: str | None = None) -> pd.DataFrame:
    with connect(url) as conn:
        with conn.cursor() as cur:
            cur.execute(search_features.REQUESTS_DDL)
            cur.executemany("insert into pg_temp.search_requests values (%s, %s, %s)", requests)
        frame = search_features.candidate_features(
            conn, AS_OF, "recs.similar_items", interests or search_features.INTERESTS_PUBLISHED, in_stock_only=True
        )
    return frame.set_index(["search_id", "item_id"])


def test_text_match_scores_tokens_exactly_or_within_one_edit_then_orders_by_popularity(tiny):
    frame = features(tiny, [("plain", None, "Kettles"), ("typo", None, "ketltes"), ("two", None, "lumen kettles")])
    # k4 is listed after as_of: never a candidate; l1 has no kettle token
    assert frame.loc["plain"].index.tolist() == ["k3", "k2", "k1"]  # popularity ln 11, ln 6, ln 4
    assert frame.loc["plain", "text_score"].tolist() == [1.0, 1.0, 1.0]
    assert frame.loc["plain", "popularity"].to_numpy() == pytest.approx(np.log([11, 6, 4]))
    # "ketltes" -> "ketlte": one swap from "kettle"
    assert frame.loc["typo"].index.tolist() == ["k3", "k2", "k1"]
    assert frame.loc["typo", "text_score"].tolist() == pytest.approx([search_features.FUZZY_WEIGHT] * 3)
    # two tokens: k3 matches both, the others one of two
    assert frame.loc["two"].index.tolist() == ["k3", "k2", "k1", "l1"]
    assert frame.loc["two", "text_score"].tolist() == [1.0, 0.5, 0.5, 0.5]
    assert frame.loc["two", "base_rank"].tolist() == [1, 2, 3, 4]


def test_personal_features_are_hand_computed_and_neutral_for_opted_out_and_anonymous_users(tiny):
    frame = features(tiny, [("u1", "u1", "kettles lamps"), ("u4", "u4", "kettles lamps"), ("anon", None, "kettles")])
    u1 = frame.loc["u1"]
    # weights k3 2.5, l1 0.5 (total 3, prior 3): Home 3 / 6, Lumen 3 / 6, Hearthly 0
    assert u1.loc[["k1", "k3", "l1"], "category_affinity"].tolist() == pytest.approx([0.5, 0.5, 0.5])
    assert u1.loc[["k1", "k2", "k3", "l1"], "brand_affinity"].tolist() == pytest.approx([0, 0, 0.5, 0.5])
    # price band (2.5 * 1 + 0.5 * 0) / 3 = 5/6, shrunk by 3 / (3 + 3): 0.5 + (0.5 - |5/6 - band|) / 2
    expected_fit = [0.5 + (0.5 - abs(5 / 6 - band)) / 2 for band in (0, 0.5, 1, 0)]
    assert u1.loc[["k1", "k2", "k3", "l1"], "price_fit"].tolist() == pytest.approx(expected_fit)
    # CF: (2.5 * 0.4 + 0.5 * 0.2) / 3 for k1, nothing else has a neighbour in u1's history
    assert u1.loc[["k1", "k2", "k3"], "cf_score"].tolist() == pytest.approx([1.1 / 3, 0, 0])
    # interests: term:lumen (1) for the Lumen items, category:Home (0.5) for the rest
    assert u1.loc[["k1", "k2", "k3", "l1"], "search_interest"].tolist() == pytest.approx([0.5, 0.5, 1, 1])
    for neutral in (frame.loc["u4"], frame.loc["anon"]):
        assert (neutral[["category_affinity", "brand_affinity", "search_interest", "cf_score"]] == 0).all().all()
        assert (neutral["price_fit"] == 0.5).all()


def test_point_in_time_interests_only_read_searches_before_as_of(tiny):
    with psycopg2.connect(tiny) as conn, conn.cursor() as cur:
        cur.execute(
            "insert into analytics.fct_searches (search_id, user_id, query, searched_at, session_id)"
            " values ('q1', 'u1', 'kettles', '2026-03-02', 's9')"
        )
        interests = cur.mogrify(search_features.INTERESTS_AS_OF, {"as_of": AS_OF, "half_life": 30}).decode()
    frame = features(tiny, [("u1", "u1", "kettles lamps")], interests)
    # only "lumen" (before as_of) counts, and it names no category: Lumen items 1, the rest 0
    assert frame.loc["u1"].loc[["k1", "k2", "k3", "l1"], "search_interest"].tolist() == [0, 0, 1, 1]


def test_search_reranks_with_the_stored_ranker_and_gives_reasons(tiny):
    with connect(tiny) as conn:
        runs.ensure_schema(conn)
        with conn.cursor() as cur:
            cur.execute(search_features.SEARCH_DDL)
            # a ranker that only looks at brand affinity
            ranker = pd.DataFrame(
                {
                    "run_id": "run_x",
                    "feature": [*search_features.FEATURES, "intercept"],
                    "center": 0.0,
                    "scale": 1.0,
                    "coefficient": [1.0 if name == "brand_affinity" else 0.0 for name in search_features.FEATURES]
                    + [0],
                }
            )
            # serving is as of the newest event: drop the one after AS_OF, so k4 (listed later) stays out
            cur.execute("delete from analytics.fct_interactions where event_at > %s", (AS_OF,))
        frames.copy_frame(conn, "ml.search_ranker", ranker)
        conn.commit()
    personal = search.search(tiny, "U1", "lumen kettles")
    assert personal["item_id"].tolist() == ["k3", "l1", "k2", "k1"]  # Lumen first, then the text order
    assert personal["text_rank"].tolist() == [1, 4, 2, 3]
    assert personal["reason"].tolist()[:2] == ["you like Lumen", "you like Lumen"]
    assert personal["reason"].tolist()[2:] == ["matches your search"] * 2
    anonymous = search.search(tiny, None, "lumen kettles", n=2)
    assert anonymous["item_id"].tolist() == ["k3", "k2"] and (anonymous["reason"] == "matches your search").all()
    opted_out = search.search(tiny, "U4", "lumen kettles")
    assert opted_out["item_id"].tolist() == ["k3", "k2", "k1", "l1"]
    with pytest.raises(ValueError, match="not in the warehouse"):
        search.search(tiny, "nobody", "kettles")
    with pytest.raises(ValueError, match="empty"):
        search.search(tiny, "U1", "  ")
    assert search.search(tiny, "U1", "zebra").empty


def test_a_shop_without_searches_followed_by_a_choice_is_skipped_not_failed(tiny):
    # the only search (q0) has no event after it in its session
    result = search.evaluate_search(tiny, "run_tiny", AS_OF, config=registry.load_model_config())
    assert "skipped" in result
    with psycopg2.connect(tiny) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from ml.model_evaluations union all select count(*) from ml.search_ranker")
        assert [row[0] for row in cur.fetchall()] == [0, 0]


# --------------------------------------------------------------------------- the simulated shop

SEARCH_SHOP = {"users": 6_000, "items": 600, "days": 60, "seed": 11}


@pytest.fixture(scope="module")
def shop_warehouse(fresh_database, tmp_path_factory):
    """A simulated shop big enough for a few hundred held-out searches, loaded and built by dbt (no publish)."""
    out = tmp_path_factory.mktemp("search_shop")
    simulate(out, **SEARCH_SHOP)
    end = datetime.fromisoformat(json.loads((out / "manifest.json").read_text())["end_date"]).replace(
        tzinfo=UTC
    ) + timedelta(days=1)
    url = fresh_database()
    with connect(url) as conn:
        load.load_landing(conn, out, "batch_1")
    env = environment(url, airflow_home=tmp_path_factory.mktemp("airflow"))
    subprocess.run(
        [
            str(BIN / "dbt"),
            "run",
            "--exclude",
            "tag:publish",
            "--project-dir",
            str(DBT_PROJECT),
            "--target-path",
            str(tmp_path_factory.mktemp("dbt_target")),
            "--vars",
            json.dumps({"as_of": end.isoformat(), "run_id": "run_search"}),
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    publish_identity_map(url)
    with connect(url) as conn:
        result = search.evaluate_search(conn, "run_search", end)
    return url, end, out, result


def evaluations(url: str) -> pd.DataFrame:
    with connect(url) as conn:
        rows = frames.read_frame(
            conn,
            "select model_name, segment, metric, k, metric_value from ml.model_evaluations "
            "where run_id = 'run_search' and variant = 'search' order by model_name, metric",
        )
    return rows.astype({"k": int, "metric_value": float})


def test_personalized_search_beats_text_match_on_held_out_searches(shop_warehouse):
    url, _, _, result = shop_warehouse
    rows = evaluations(url)
    assert set(rows["segment"]) == {"searches"}
    assert set(zip(rows["metric"], rows["k"], strict=True)) == {
        ("mrr", 0),
        ("ndcg", 10),
        ("hit_rate", 10),
        ("searches", 0),
    }
    values = rows.set_index(["model_name", "metric"])["metric_value"]
    assert values["search_text_match", "searches"] == values["search_personalized", "searches"] >= 200
    # views after a search follow popularity, planted price tiers and styles, not the query's brand words
    assert values["search_personalized", "mrr"] > values["search_text_match", "mrr"] + 0.01
    assert values["search_personalized", "ndcg"] > values["search_text_match", "ndcg"]
    # planted: users view items of their spending tier, so the learned price-band weight is positive
    assert result["coefficients"]["price_fit"] > 0 and result["coefficients"]["popularity"] > 0


def test_user_price_band_recovers_the_planted_spending_tier(shop_warehouse):
    url, end, shop, _ = shop_warehouse
    truth = pd.read_csv(shop / "truth" / "user_truth.csv", dtype=str)
    with connect(url) as conn:
        with conn.cursor() as cur:
            cur.execute(search_features.REQUESTS_DDL)
            cur.execute(
                "insert into pg_temp.search_requests "
                "select map.shop_user_id, map.user_id, 'headphones' from identity.user_id_map as map"
            )
            cur.execute(
                "select min(item_id) filter (where price = cheapest), min(item_id) filter (where price = dearest) "
                "from (select item_id, price, min(price) over () as cheapest, max(price) over () as dearest "
                "from analytics.dim_items where category_path like '%%> Headphones' and created_at < %s) as items",
                (end - timedelta(days=60),),
            )
            cheap, dear = cur.fetchone()
        frame = search_features.candidate_features(conn, end, None, search_features.INTERESTS_PUBLISHED)
    fit = frame[frame["item_id"].isin([cheap, dear])].pivot(index="search_id", columns="item_id", values="price_fit")
    # fit(cheapest) - fit(dearest) = (1 - 2 x the user's band) x shrinkage: > 0 for users of cheap items
    prefers_cheap = (fit[cheap] - fit[dear]).rename("prefers_cheap")
    by_tier = truth.merge(prefers_cheap, left_on="user_id", right_index=True).groupby("spending_tier")
    means = by_tier["prefers_cheap"].mean()
    assert by_tier.size().min() >= 500
    assert means["low"] > means["mid"] > means["high"], means
    assert means["low"] > 0 > means["high"], means


def test_point_in_time_interests_at_the_run_end_equal_the_dbt_mart(shop_warehouse):
    url, end, _, _ = shop_warehouse
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(search_features.REQUESTS_DDL)
        cur.execute("insert into pg_temp.search_requests select user_id, user_id, 'x' from analytics.dim_users")
        statement = cur.mogrify(
            search_features.INTERESTS_AS_OF,
            {"as_of": end + timedelta(microseconds=1), "half_life": search_features.HALF_LIFE_DAYS},
        ).decode()
        recomputed = frames.read_frame(conn, statement)
        mart = frames.read_frame(conn, "select user_id, term, weight from analytics.user_search_interests")
    joined = mart.merge(recomputed, on=["user_id", "term"], how="outer", suffixes=("_mart", "_pit"))
    assert len(joined) == len(mart) > 1000
    np.testing.assert_allclose(joined["weight_pit"].astype(float), joined["weight_mart"].astype(float), rtol=1e-9)


def test_rerun_replaces_the_search_rows(shop_warehouse):
    url, end, _, _ = shop_warehouse
    before = evaluations(url)
    with connect(url) as conn:
        search.evaluate_search(conn, "run_search", end)
    pd.testing.assert_frame_equal(evaluations(url), before)


def test_cli_search_prints_a_ranked_table_with_reasons(shop_warehouse):
    url, _, _, _ = shop_warehouse
    env = {**os.environ, "WAREHOUSE_URL": url}
    result = subprocess.run(
        [RECSYS, "search", "--user", "U000012", "-n", "5", "smart watches"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["rank", "item_id", "item_name"] and "reason" in lines[0]
    assert len(lines) == 6 and all("Electronics" in line for line in lines[1:])
    unknown = subprocess.run([RECSYS, "search", "--user", "nobody", "x"], capture_output=True, text=True, env=env)
    assert unknown.returncode == 2 and "not in the warehouse" in unknown.stderr
