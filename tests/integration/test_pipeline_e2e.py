"""End to end: the real DAG (``airflow dags test``) on a small simulated shop in a fresh Postgres database.

One DAG run per session; the tests below read what it built.
"""

from __future__ import annotations

import csv
import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pandas as pd
import psycopg2
import pytest

from recsys.dev.local import environment, prepare_airflow, run_dag
from recsys.usecases.search import search

REPO = Path(__file__).resolve().parents[2]

CONTRACTS = {
    "analytics.dim_users": [
        "user_id",
        "signup_at",
        "age_band",
        "gender",
        "region",
        "platform",
        "is_personalization_allowed",
    ],
    "analytics.dim_items": ["item_id", "category", "brand", "price", "is_in_stock"],
    "analytics.fct_interactions": ["user_id", "item_id", "event_type", "event_at", "session_id", "platform"],
    "analytics.user_profiles": [
        "user_id",
        "recency_days",
        "frequency",
        "monetary",
        "rfm_segment",
        "spending_power",
        "price_sensitivity",
        "promo_sensitivity",
        "lifecycle_stage",
        "top_categories",
    ],
    "analytics.user_interest_tags": ["user_id", "tag", "weight", "tag_rank"],
    "recs.user_recommendations": [
        "user_id",
        "placement",
        "item_rank",
        "item_id",
        "score",
        "model_name",
        "reason_code",
        "reason_text",
        "run_id",
        "generated_at",
    ],
    "recs.similar_items": ["item_id", "item_rank", "similar_item_id", "score", "run_id"],
    "recs.cold_start_recommendations": ["segment_key", "item_rank", "item_id", "score", "run_id"],
    "recs.promotion_targets": ["promotion_id", "user_id", "target_rank", "propensity", "run_id"],
    "recs.model_evaluations": ["run_id", "model_name", "segment", "metric", "k", "metric_value"],
    "recs.runs": ["run_id", "started_at", "finished_at", "status", "champion_model", "data_cutoff_at"],
    "recs.model_search": ["run_id", "model_name", "trial", "params", "ndcg", "is_selected"],
}


@pytest.fixture(scope="session")
def pipeline(fresh_database, shop, tmp_path_factory):
    """Run the main DAG once on the test shop; return (warehouse URL, landing dir, env)."""
    url = fresh_database()
    env = environment(url, shop, airflow_home=tmp_path_factory.mktemp("airflow"))
    env["RECSYS_PSEUDONYM_KEY"] = secrets.token_hex(32)  # in no file: the search below must find it nowhere
    env["RECSYS_GX_DOCS_DIR"] = str(tmp_path_factory.mktemp("gx_docs"))
    prepare_airflow(env)
    end_date = json.loads((shop / "manifest.json").read_text())["end_date"]
    run_dag(env, end_date)
    return url, shop, env


def frame(url: str, sql: str, params: tuple | dict = ()) -> pd.DataFrame:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return pd.DataFrame(cur.fetchall(), columns=[column.name for column in cur.description])


def test_contract_tables_exist_with_their_columns_and_rows(pipeline):
    url, _, _ = pipeline
    for table, columns in CONTRACTS.items():
        schema, name = table.split(".")
        present = set(
            frame(
                url,
                "select column_name from information_schema.columns where table_schema = %s and table_name = %s",
                (schema, name),
            )["column_name"]
        )
        assert set(columns) <= present, (table, set(columns) - present)
        assert frame(url, f"select count(*) as n from {table}")["n"].iloc[0] > 0, table


#: the keys no dbt test checks: the dbt contracts make them primary keys of the tables (docs/quality.md)
CONSTRAINED_KEYS = {
    "analytics.dim_users": ["user_id"],
    "analytics.dim_items": ["item_id"],
    "analytics.dim_promotions": ["promotion_id"],
    "analytics.fct_interactions": ["event_id"],
    "analytics.fct_reviews": ["review_id"],
    "analytics.fct_redemptions": ["redemption_id"],
    "analytics.fct_social_edges": ["edge_id"],
    "analytics.user_follows": ["user_id", "followed_user_id"],
    "analytics.user_profiles": ["user_id"],
    "analytics.user_interest_tags": ["user_id", "tag"],
    "analytics.user_category_sentiment": ["user_id", "category"],
    "recs.runs": ["run_id"],
    "recs.model_search": ["run_id", "model_name", "trial"],
    "recs.similar_items": ["item_id", "item_rank"],
    "recs.cold_start_recommendations": ["segment_key", "item_rank"],
}


def test_contract_keys_are_constraints_in_the_warehouse(pipeline):
    url, _, _ = pipeline
    keys = frame(
        url,
        """
        select constraints.conrelid::regclass::text as table_name, array_agg(columns.attname::text
            order by array_position(constraints.conkey, columns.attnum)) as key
        from pg_constraint as constraints
        inner join pg_attribute as columns
            on columns.attrelid = constraints.conrelid and columns.attnum = any(constraints.conkey)
        where constraints.contype = 'p'
        group by constraints.conrelid
        """,
    )
    found = dict(zip(keys["table_name"], keys["key"], strict=True))
    assert {table: found.get(table) for table in CONSTRAINED_KEYS} == CONSTRAINED_KEYS


@pytest.mark.parametrize(
    ("table", "assignment", "rows"),
    [
        ("analytics.user_profiles", "lifecycle_stage = 'zombie'", "true"),
        ("analytics.dim_users", "region = null", "true"),
        ("recs.user_recommendations", "placement = 'sidebar'", "true"),
        # a second kept version of an event: the partial unique index that replaced the staging view's unique test
        ("staging.base_shop__events", "is_duplicate = false", "exclusion_reason is null and is_duplicate"),
    ],
)
def test_row_checks_are_constraints_in_the_warehouse(pipeline, table, assignment, rows):
    """The checks dbt used to test after the build (accepted values, not null, a unique key) refuse a bad row when
    it is written."""
    url, _, _ = pipeline
    violations = (psycopg2.errors.CheckViolation, psycopg2.errors.NotNullViolation, psycopg2.errors.UniqueViolation)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(f"select min(ctid)::text from {table} where {rows}")
        ((row,),) = cur.fetchall()
        assert row is not None, f"no row of {table} where {rows}"
        with pytest.raises(violations):
            cur.execute(f"update {table} set {assignment} where ctid = %s::tid", (row,))
        conn.rollback()


def test_every_landed_row_is_loaded_or_rejected(pipeline):
    url, shop, _ = pipeline
    audit = frame(url, "select table_name, rows_read, rows_loaded, rows_rejected from quality.load_audit")
    assert (audit["rows_read"] == audit["rows_loaded"] + audit["rows_rejected"]).all()
    for row in audit.to_dict("records"):
        with (shop / f"{row['table_name']}.csv").open(newline="", encoding="utf-8", errors="replace") as handle:
            records_in_file = sum(1 for _ in csv.reader(handle)) - 1
        assert row["rows_read"] == records_in_file, row
        raw_rows = frame(url, f"select count(*) as n from raw.{row['table_name']}")["n"].iloc[0]
        rejected = frame(
            url, "select count(*) as n from quality.rejected_rows where table_name = %s", (row["table_name"],)
        )["n"].iloc[0]
        assert (raw_rows, rejected) == (row["rows_loaded"], row["rows_rejected"]), row
    # the simulator's malformed lines and unparseable timestamps are among the rejects
    reasons = frame(url, "select reason from quality.rejected_rows where table_name = 'events'")["reason"]
    assert reasons.str.startswith("expected").any() and reasons.str.contains("as timestamp").any()


def test_profiles_recover_the_planted_top_category(pipeline):
    url, shop, _ = pipeline
    truth = pd.read_csv(shop / "truth" / "user_truth.csv", dtype=str)
    truth = truth[truth["is_bot"].str.lower() != "true"]
    profiles = frame(
        url,
        """
        select map.shop_user_id, profile.top_categories as profile_top_categories, count(*) as events
        from analytics.user_profiles as profile
        inner join identity.user_id_map as map on map.user_id = profile.user_id
        inner join analytics.fct_interactions as interactions on interactions.user_id = profile.user_id
        group by 1, 2
        having count(*) >= 10""",
    )
    joined = profiles.merge(truth, left_on="shop_user_id", right_on="user_id")
    assert len(joined) >= 100
    recovered = (joined["profile_top_categories"].str.split("|").str[0] == joined["top_category"]).mean()
    assert recovered >= 0.7, recovered


def test_published_recommendations_follow_the_contract(pipeline):
    url, _, _ = pipeline
    published = frame(url, "select * from recs.user_recommendations")
    assert set(published["placement"]) == {"for_you", "discover", "buy_again"}
    recs = published[published["placement"] == "for_you"]
    users = frame(url, "select user_id from analytics.dim_users")
    assert set(recs["user_id"]) == set(users["user_id"])
    per_user = recs.groupby("user_id")
    assert (per_user.size() == 20).all()
    assert not recs.duplicated(["user_id", "item_id"]).any()
    assert (per_user["item_rank"].min() == 1).all() and (per_user["item_rank"].max() == 20).all()
    assert recs["reason_code"].notna().all() and recs["reason_text"].str.len().gt(0).all()
    assert recs["run_id"].nunique() == 1
    items = frame(url, "select item_id, is_in_stock from analytics.dim_items")
    assert set(recs["item_id"]) <= set(items.loc[items["is_in_stock"], "item_id"])
    # opted out of personalization: the popularity list only, and no interest tags at all
    opted_out = frame(url, "select user_id from analytics.dim_users where not is_personalization_allowed")["user_id"]
    assert len(opted_out) > 0
    theirs = recs[recs["user_id"].isin(opted_out)]
    assert (theirs["model_name"] == "popularity").all() and (theirs["reason_code"] == "popular").all()
    tags = frame(url, "select distinct user_id from analytics.user_interest_tags")["user_id"]
    assert not set(tags) & set(opted_out)
    # discover: never an item the user bought; buy_again: only items they bought, never for an opted-out user
    bought = frame(
        url, "select distinct user_id, item_id from analytics.fct_interactions where event_type = 'purchase'"
    )
    pairs = set(zip(bought["user_id"], bought["item_id"], strict=True))
    discover, again = (published[published["placement"] == name] for name in ("discover", "buy_again"))
    assert set(discover["user_id"]) == set(users["user_id"]) and len(again) > 0
    # an opted-out user's purchases are not read, so their discover list is the plain popularity list
    consenting = discover[~discover["user_id"].isin(opted_out)]
    assert not {pair for pair in zip(consenting["user_id"], consenting["item_id"], strict=True)} & pairs
    assert {pair for pair in zip(again["user_id"], again["item_id"], strict=True)} <= pairs
    assert not set(again["user_id"]) & set(opted_out)


def test_run_is_recorded_with_evaluations_and_the_gated_champion_published(pipeline):
    url, _, _ = pipeline
    run = frame(url, "select * from recs.runs")
    assert len(run) == 1 and run["status"].iloc[0] == "published"
    run = run.iloc[0]
    models = {
        "popularity",
        "repeat_purchase",
        "item_knn",
        "user_knn",
        "als",
        "svd",
        "neural_ranker",
        "lgbm_ranker",
        "sequence",
        "content",
        "friends_bought",
    }
    evaluated = frame(
        url,
        "select distinct model_name, variant, segment from recs.model_evaluations "
        "where variant in ('all_items', 'new_items', 'business_rules', 'reranked')",
    )
    cold = evaluated[evaluated["segment"] == "new_users"]  # cold start: users who signed up in the test week
    assert set(cold["model_name"]) == {"popularity", "segment_popularity", "cold_start_demographic", "friends_bought"}
    evaluated = evaluated[evaluated["segment"] != "new_users"]
    layered = evaluated[evaluated["variant"].isin(["business_rules", "reranked"])]
    assert set(layered["model_name"]) == {run["champion_model"]}, "the champion is evaluated after the layers"
    evaluated = evaluated[evaluated["variant"].isin(["all_items", "new_items"])]
    assert set(evaluated["model_name"]) == models and set(evaluated["variant"]) == {"all_items", "new_items"}
    # segments of fewer than 50 users (models.toml [privacy]) are suppressed; this small shop has few large ones
    segments = set(evaluated["segment"]) - {"all"}
    assert "all" in set(evaluated["segment"]) and segments
    assert all(segment.split("=")[0] in ("user_type", "lifecycle_stage", "spending_power") for segment in segments)
    # the champion is the validation winner of the search on the lists as served, published only if it beat
    # both baselines
    search = frame(url, "select * from recs.model_search where is_selected")
    assert set(search["model_name"]) == models
    best = search.sort_values("ndcg_served", kind="stable").iloc[-1]["model_name"]
    champion, reason, baselines = run["champion_model"], run["champion_reason"], ("popularity", "repeat_purchase")
    if best in baselines:
        assert champion == best and reason.startswith(f"{best} (baseline) is best")
    elif champion == best:
        assert reason.startswith(f"{best} beats the baselines (z=")
    else:
        assert champion in baselines and reason.startswith(f"{best} is best but not significantly better")
    assert frame(url, "select count(*) as n from recs.model_search where is_champion")["n"].iloc[0] == 1
    published = frame(url, "select distinct model_name from recs.user_recommendations")["model_name"]
    assert champion in set(published)
    # a champion per placement, each scored on its own truth: every model's served lists per placement
    shelves = json.loads(run["placement_champions"])
    assert set(shelves) == {"for_you", "discover", "buy_again"} and shelves["for_you"]["model"] == champion
    placed = frame(
        url,
        "select distinct model_name, variant from recs.model_evaluations"
        " where variant in ('placement_for_you', 'placement_discover', 'placement_buy_again')",
    )
    assert set(placed["variant"]) == {"placement_for_you", "placement_discover", "placement_buy_again"}
    assert set(placed["model_name"]) == models


def test_search_is_evaluated_and_served_from_the_published_run(pipeline):
    url, _, _ = pipeline
    rows = frame(
        url, "select model_name, segment, metric, k, metric_value from recs.model_evaluations where variant = 'search'"
    )
    assert set(rows["model_name"]) == {"search_text_match", "search_personalized"} and set(rows["segment"]) == {
        "searches"
    }
    values = rows.set_index(["model_name", "metric"])["metric_value"]
    assert values["search_text_match", "searches"] == values["search_personalized", "searches"] > 0
    assert 0 < values["search_text_match", "mrr"] <= 1 and 0 < values["search_personalized", "mrr"] <= 1
    user = frame(url, "select shop_user_id from identity.user_id_map order by shop_user_id limit 1")["shop_user_id"][0]
    results = search(url, user, "headphones", n=5)
    assert 1 <= len(results) <= 5 and results["reason"].notna().all()
    assert results["rank"].tolist() == list(range(1, len(results) + 1))


def test_both_quality_gates_ran_and_recorded_every_expectation(pipeline):
    url, _, env = pipeline
    results = frame(url, "select gate, suite, severity, success, batch_id, run_id from quality.check_results")
    run_id = frame(url, "select run_id from recs.runs")["run_id"].iloc[0]
    assert set(results["gate"]) == {"raw", "marts_and_recs"} and set(results["run_id"]) == {run_id}
    assert {"raw_events", "load_audit", "dbt_source_freshness", "ml_recommendations"} <= set(results["suite"])
    # the simulated shop's dirt stays under every critical threshold
    assert results.loc[results["severity"] == "critical", "success"].all()
    docs = Path(env["RECSYS_GX_DOCS_DIR"]) / run_id
    assert (docs / "raw" / "index.html").exists() and (docs / "marts_and_recs" / "index.html").exists()


def test_promotion_targets_and_their_evaluation_are_published(pipeline):
    url, shop, _ = pipeline
    targets = frame(url, "select * from recs.promotion_targets")
    users = frame(url, "select user_id, is_personalization_allowed from analytics.dim_users")
    scheduled = pd.read_csv(shop / "promotions.csv", dtype=str).iloc[-1]["promotion_id"]
    assert set(targets["promotion_id"]) == {scheduled}  # the simulator's promotion starting after the window
    assert targets["user_id"].isin(users.loc[users["is_personalization_allowed"], "user_id"]).all()
    assert sorted(targets["target_rank"]) == list(range(1, len(targets) + 1))
    assert (targets.sort_values("target_rank")["propensity"].diff().dropna() <= 0).all()
    evaluations = frame(url, "select * from recs.model_evaluations where variant = 'promotion'")
    assert set(evaluations["model_name"]) == {"promotion_propensity", "promotion_rfm", "promotion_everyone"}
    assert {"roc_auc", "precision_top_decile", "lift_top_decile", "base_rate", "users"} == set(evaluations["metric"])
    overall = evaluations[evaluations["segment"] == "all"].set_index(["model_name", "metric"])["metric_value"]
    assert overall["promotion_everyone", "roc_auc"] == 0.5
    assert overall["promotion_propensity", "roc_auc"] > 0.5


def test_similar_items_are_neighbours_in_the_same_category(pipeline):
    url, _, _ = pipeline
    similar = frame(
        url,
        """
        select pairs.item_id, pairs.item_rank, pairs.score, pairs.similar_item_id,
            item.category = neighbour.category as same_category, neighbour.is_in_stock
        from recs.similar_items as pairs
        inner join analytics.dim_items as item on item.item_id = pairs.item_id
        inner join analytics.dim_items as neighbour on neighbour.item_id = pairs.similar_item_id""",
    )
    assert len(similar) > 0 and similar["item_id"].nunique() > 100
    assert (similar["item_id"] != similar["similar_item_id"]).all() and similar["is_in_stock"].all()
    per_item = similar.sort_values(["item_id", "item_rank"]).groupby("item_id")
    assert (per_item["item_rank"].max() <= 20).all() and (per_item.size() == per_item["item_rank"].max()).all()
    assert (per_item["score"].diff().dropna() <= 0).all()
    # the simulated shoppers browse within categories: neighbours share the category far more than by chance
    categories = frame(url, "select category from analytics.dim_items")["category"]
    chance = (categories.value_counts(normalize=True) ** 2).sum()  # two random items share a category
    assert similar.loc[similar["item_rank"] <= 5, "same_category"].mean() > 3 * chance


def test_analytics_and_recs_hold_no_raw_pii_or_shop_user_ids(pipeline):
    url, shop, _ = pipeline
    users = pd.read_csv(shop / "users.csv", dtype=str, on_bad_lines="skip")
    secrets = set(users["email"].dropna().str.strip()) | set(users["phone"].dropna().str.strip())
    shop_ids = set(users["user_id"].dropna().str.strip())
    columns = frame(
        url,
        "select table_schema, table_name, column_name from information_schema.columns "
        "where table_schema in ('analytics', 'recs') and data_type = 'text'",
    )
    for row in columns.to_dict("records"):
        values = set(
            frame(url, f'select distinct "{row["column_name"]}" as v from {row["table_schema"]}."{row["table_name"]}"')[
                "v"
            ].dropna()
        )
        assert not values & secrets, row
        assert not values & shop_ids, row


def test_export_writes_recommendations_keyed_by_shop_user_ids(pipeline, tmp_path):
    url, shop, env = pipeline
    out = tmp_path / "recs.csv"
    subprocess.run(
        [str(Path(sys.executable).parent / "recsys"), "export", "recommendations", "--out", str(out)],
        env={**env, "WAREHOUSE_URL": url},
        check=True,
    )
    exported = pd.read_csv(out, dtype={"user_id": str, "item_id": str})
    assert list(exported.columns)[:6] == ["user_id", "item_rank", "item_id", "score", "model_name", "reason_code"]
    shop_ids = set(pd.read_csv(shop / "users.csv", dtype=str, on_bad_lines="skip")["user_id"].dropna())
    assert set(exported["user_id"]) <= shop_ids
    # one list per shop account: the accounts stitched into one person get that person's list
    per_account = "select count(*) as n from recs.user_recommendations as recs"
    per_account += " inner join identity.user_id_map as map on map.user_id = recs.user_id"
    assert len(exported) == frame(url, per_account)["n"].iloc[0]


def test_explain_prints_the_profile_tags_and_the_published_list_with_reasons(pipeline):
    url, _, env = pipeline
    user = frame(
        url,
        """
        select map.shop_user_id, map.user_id, profile.rfm_segment
        from identity.user_id_map as map
        inner join analytics.user_profiles as profile on profile.user_id = map.user_id
        where exists (select from analytics.user_interest_tags as tags where tags.user_id = map.user_id)
        order by map.shop_user_id
        limit 1""",
    ).iloc[0]
    recsys = str(Path(sys.executable).parent / "recsys")
    shown = subprocess.run(
        [recsys, "explain", user["shop_user_id"]], env={**env, "WAREHOUSE_URL": url}, check=True, capture_output=True
    ).stdout.decode()
    assert shown.startswith(f"User {user['shop_user_id']}\n") and f"rfm_segment: {user['rfm_segment']}" in shown
    top_tag = frame(
        url, "select tag from analytics.user_interest_tags where user_id = %s and tag_rank = 1", (user["user_id"],)
    )["tag"].iloc[0]
    assert f"  {top_tag}: " in shown
    reasons = frame(
        url,
        "select reason_text from recs.user_recommendations where user_id = %s and placement = 'for_you'",
        (user["user_id"],),
    )
    assert len(reasons) == 20 and all(text in shown for text in reasons["reason_text"])
    unknown = subprocess.run(
        [recsys, "explain", "no-such-user"], env={**env, "WAREHOUSE_URL": url}, capture_output=True
    )
    assert unknown.returncode == 2 and b"is not in the warehouse" in unknown.stderr


def test_report_and_docs_of_the_real_run(pipeline, tmp_path):
    url, _, env = pipeline
    recsys = str(Path(sys.executable).parent / "recsys")
    out = tmp_path / "report.html"
    subprocess.run([recsys, "report", "--out", str(out)], env={**env, "WAREHOUSE_URL": url}, check=True)
    document = out.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//|<script""", document, re.I)
    run = frame(url, "select run_id, champion_model from recs.runs where status = 'published'").iloc[0]
    assert f"<h1>recsys report: run {run['run_id']}</h1>" in document
    models = re.search(r'<section id="models">(.*?)</section>', document, re.S).group(1)
    ndcg = frame(
        url,
        "select model_name, metric_value from recs.model_evaluations where run_id = %s and variant = 'all_items' "
        "and segment = 'all' and metric = 'ndcg' and k = 10",
        (run["run_id"],),
    )
    assert len(ndcg) >= 7
    for model, value in zip(ndcg["model_name"], ndcg["metric_value"], strict=True):
        cells = f'<td>{model}</td><td class="num">{value:.4f}</td>'
        assert (f'<tr class="champion">{cells}' if model == run["champion_model"] else f"<tr>{cells}") in models
    profiles = re.search(r'<section id="profiles">(.*?)</section>', document, re.S).group(1)
    segments = frame(
        url, "select rfm_segment, count(*) as n from analytics.user_profiles group by 1 having count(*) >= 50"
    )
    assert len(segments) and all(
        f'<td>{name}</td><td class="num">{n:,}</td>' in profiles for name, n in segments.values
    )

    docs = tmp_path / "docs"
    command = [recsys, "docs", "--out", str(docs)]
    done = subprocess.run(command, env={**env, "WAREHOUSE_URL": url}, check=True, capture_output=True, text=True)
    static = docs / "static_index.html"
    assert done.stdout.splitlines()[-1] == f"single file: {static}" and (docs / "index.html").exists()
    # the catalog comes from the database: the built tables with their columns
    catalog = json.loads((docs / "catalog.json").read_text())["nodes"]
    built = {"model.recsys." + name for name in ["dim_users", "user_profiles", "user_recommendations", "runs"]}
    assert built <= set(catalog) and "rfm_segment" in catalog["model.recsys.user_profiles"]["columns"]
    # models compiled with the published run's vars; the key is read from its table, never in the SQL text
    manifest, page = (docs / "manifest.json").read_text(), static.read_text()
    assert run["run_id"] in manifest and "select key from keystore.pseudonym_key" in manifest
    assert "user_profiles" in page and env["RECSYS_PSEUDONYM_KEY"] not in manifest + page


def test_dbt_unit_tests_pass_on_the_built_warehouse(pipeline, tmp_path):
    """The DAG leaves dbt's unit tests out (SQL logic on fixed inputs, no data to check): they run here."""
    _, _, env = pipeline
    dbt = str(Path(sys.executable).parent / "dbt")
    done = subprocess.run(
        [dbt, "test", "--select", "test_type:unit", "--target-path", str(tmp_path)],
        env=env,
        cwd=REPO / "dbt_project",
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    results = json.loads((tmp_path / "run_results.json").read_text())["results"]
    unit_tests = [result["status"] for result in results if result["unique_id"].startswith("unit_test.")]
    assert len(unit_tests) >= 20 and set(unit_tests) == {"pass"}


# Runs last (pytest keeps file order): it changes the warehouse the tests above read.
def test_erasure_leaves_no_trace_and_keeps_the_user_out_of_later_loads(pipeline):
    url, shop, env = pipeline
    users = pd.read_csv(shop / "users.csv", dtype=str, keep_default_na=False)
    orders = pd.read_csv(shop / "orders.csv", dtype=str, keep_default_na=False)
    reviews = pd.read_csv(shop / "reviews.csv", dtype=str, keep_default_na=False)
    persons = pd.read_csv(shop / "truth" / "persons.csv", dtype=str)  # a person of one account: one users row
    alone = set(persons.loc[persons.groupby("person_id")["user_id"].transform("size") == 1, "user_id"])
    shop_id = sorted(set(orders["user_id"]) & set(reviews["user_id"]) & set(users["user_id"]) & alone)[0]
    person = users[users["user_id"] == shop_id].iloc[0]
    key = frame(url, "select user_id from identity.user_id_map where shop_user_id = %s", (shop_id,))["user_id"]
    assert len(key) == 1, "the user is in the warehouse before"
    order_ids = orders.loc[orders["user_id"] == shop_id, "order_id"]
    traces = [shop_id, key.iloc[0], person["email"], person["phone"], *order_ids]
    # substrings for LIKE (its wildcards escaped): a row matches when its text columns, joined, contain a trace
    likes = ["%" + re.sub(r"([\\%_])", r"\\\1", trace) + "%" for trace in traces if trace]

    def tables_mentioning() -> set[str]:
        columns = frame(
            url,
            """
            select columns.table_schema, columns.table_name, columns.column_name
            from information_schema.columns as columns
            inner join information_schema.tables as tables using (table_schema, table_name)
            where tables.table_type = 'BASE TABLE'
                and columns.table_schema not in ('pg_catalog', 'information_schema')
                and columns.data_type in ('text', 'jsonb', 'character varying')""",
        )
        found = set()
        for (schema, table), text_columns in columns.groupby(["table_schema", "table_name"])["column_name"]:
            # one LIKE ANY over the joined columns: a scan of every row (after the erasure) is 7x faster than a
            # regular expression per column
            joined = ", ".join(f'"{column}"::text' for column in text_columns)
            query = (
                f'select exists (select from "{schema}"."{table}"'
                f" where concat_ws(chr(1), {joined}) like any(%(likes)s)) as found"
            )
            if frame(url, query, {"likes": likes})["found"].iloc[0]:
                found.add(f"{schema}.{table}")
        return found

    assert {"raw.users", "raw.events", "analytics.dim_users", "recs.user_recommendations"} <= tables_mentioning()
    recsys = str(Path(sys.executable).parent / "recsys")
    done = subprocess.run(
        [recsys, "erase-user", shop_id], env={**env, "WAREHOUSE_URL": url}, check=True, capture_output=True, text=True
    )
    assert done.stdout.startswith("erased: ")
    # only the suppression list keeps the keyed hash, so that later loads can drop the user
    assert tables_mentioning() == {"quality.erased_users"}
    audit = frame(url, "select erased_at, rows_deleted from quality.erasure_audit")
    assert len(audit) == 1 and audit["rows_deleted"].iloc[0]["raw.users"] == 1

    # the user_erasure DAG does the same for a second user, whose request was queued: the id stays out of
    # the DAG run's conf, and so out of Airflow's metadata database
    second = sorted(set(orders["user_id"]) - {shop_id})[0]
    queued = subprocess.run(
        [recsys, "erase-user", second, "--queue"], env={**env, "WAREHOUSE_URL": url}, check=True, capture_output=True
    )
    assert queued.stdout.startswith(b"queued")
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "dags", "test", "user_erasure"], env=env, check=True, capture_output=True)
    assert frame(url, "select count(*) as n from identity.user_id_map where shop_user_id = %s", (second,))["n"][0] == 0
    assert frame(url, "select count(*) as n from raw.users where user_id = %s", (second,))["n"][0] == 0
    assert frame(url, "select count(*) as n from quality.erasure_requests")["n"][0] == 0
    assert len(frame(url, "select erasure_id from quality.erasure_audit")) == 2
    metadata = list(Path(env["AIRFLOW_HOME"]).glob("airflow.db*"))  # the SQLite file and its journal
    assert metadata and not [path for path in metadata if second.encode() in path.read_bytes()]

    # the same delivery again: the user's rows are dropped at load, counted as rejected, stored without content
    batch_id = frame(url, "select distinct batch_id from quality.load_audit")["batch_id"].iloc[0]
    subprocess.run([recsys, "load", str(shop), "--batch-id", batch_id], env={**env, "WAREHOUSE_URL": url}, check=True)
    assert tables_mentioning() == {"quality.erased_users"}
    dropped = frame(
        url, "select table_name, count(*) as n from quality.rejected_rows where reason = 'erased_user' group by 1"
    )
    assert dict(zip(dropped["table_name"], dropped["n"], strict=True))["users"] == 2  # both erased users
    audit = frame(url, "select rows_read, rows_loaded, rows_rejected from quality.load_audit")
    assert (audit["rows_read"] == audit["rows_loaded"] + audit["rows_rejected"]).all()


#: the key's own stores: the local key file and the embedded warehouse (``keystore.pseudonym_key``); the venv
KEY_STORES = {".local", ".venv", ".git"}


def test_the_pseudonymization_key_is_in_no_artefact_nor_statement(pipeline):
    url, _, env = pipeline
    key = env["RECSYS_PSEUDONYM_KEY"]
    roots = [REPO, Path(env["AIRFLOW_HOME"]), Path(env["RECSYS_GX_DOCS_DIR"])]
    files = [
        path
        for root in roots
        for path in root.rglob("*")
        if path.is_file() and not KEY_STORES & set(path.relative_to(root).parts)
    ]
    assert any(path.suffix == ".db" for path in files), "the Airflow metadata DB is among the files searched"
    assert [str(path) for path in files if key.encode() in path.read_bytes()] == []
    statements = frame(url, "select coalesce(query, '') as query from pg_stat_activity")["query"]
    assert not statements.str.contains(key, regex=False).any()
    # the key is where the loader put it, and only there
    assert frame(url, "select key from keystore.pseudonym_key")["key"].tolist() == [key]
