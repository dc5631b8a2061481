"""The dbt project parses and follows the house rules.

No database is needed: ``dbt parse`` only renders the project (the profile's
env vars get dummy values). The DB-backed ``dbt build`` runs in the integration
tests; sqlfluff runs in ``make lint``, a CI step of its own.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECT = REPO / "dbt_project"
BIN = Path(sys.executable).parent

#: tables the Python tasks read or the shop serves from: their contract must be enforced
CONTRACT_MODELS = {
    "dim_users",
    "dim_items",
    "fct_interactions",
    "fct_reviews",
    "user_profiles",
    "user_interest_tags",
    "user_recommendations",
    "similar_items",
    "cold_start_recommendations",
    "model_evaluations",
    "model_search",
    "runs",
    "dim_promotions",
    "fct_redemptions",
    "promotion_targets",
    "fct_orders",
    "fct_searches",
    "fct_social_edges",
    "user_follows",
    "item_search_tokens",
    "user_search_interests",
    "identity_stitching_summary",
    "user_text_interests",
    "text_term_idf",
    "user_category_sentiment",
}
SCHEMAS = {"staging", "intermediate", "analytics", "recs", "quality", "identity"}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> dict:
    """``dbt parse`` into a temporary target path; the parsed manifest."""
    target = tmp_path_factory.mktemp("dbt_target")
    env = {
        **os.environ,
        "RECSYS_PGDATABASE": os.environ.get("RECSYS_PGDATABASE", "recsys_parse_only"),
        "RECSYS_PSEUDONYM_KEY": "parse-only-key",
        "DBT_TARGET_PATH": str(target),
        "DBT_LOG_PATH": str(target / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DO_NOT_TRACK": "1",
    }
    result = subprocess.run(
        [
            str(BIN / "dbt"),
            "parse",
            "--project-dir",
            str(PROJECT),
            "--profiles-dir",
            str(PROJECT),
            "--no-partial-parse",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"dbt parse failed:\n{result.stdout}\n{result.stderr}"
    return json.loads((target / "manifest.json").read_text())


def _models(manifest: dict) -> dict[str, dict]:
    return {
        node["name"]: node
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["package_name"] == "recsys"
    }


def test_dbt_parse_succeeds_with_the_expected_models(manifest):
    models = _models(manifest)
    expected = {
        "stg_shop__users",
        "stg_shop__items",
        "stg_shop__events",
        "stg_shop__orders",
        "stg_shop__order_lines",
        "stg_shop__reviews",
        "stg_shop__promotions",
        "stg_shop__redemptions",
        "int_bot_users",
        "fct_searches",
        "fct_orders",
        "fct_order_lines",
        "excluded_rows",
        "staging_reconciliation",
        "user_id_map",
    } | CONTRACT_MODELS
    assert expected <= set(models)
    assert {node["schema"] for node in models.values()} <= SCHEMAS


def test_every_model_has_a_yml_of_its_name_and_a_description(manifest):
    for name, node in _models(manifest).items():
        assert node["patch_path"], f"{name} has no yml"
        assert Path(node["patch_path"].split("://")[-1]).stem == name, f"{name} is documented in {node['patch_path']}"
        assert node["description"].strip(), f"{name} has no description"


def test_contracts_enforced_on_the_tables_python_reads(manifest):
    models = _models(manifest)
    for name in CONTRACT_MODELS:
        assert models[name]["config"]["contract"]["enforced"], name
        assert all(column.get("data_type") for column in models[name]["columns"].values()), name


def test_publish_models_are_tagged_and_sources_used_only_in_staging(manifest):
    for name, node in _models(manifest).items():
        if node["schema"] == "recs" or name.startswith("stg_ml__"):
            assert "publish" in node["tags"], name
        if node["depends_on"]["nodes"] and any(dep.startswith("source.") for dep in node["depends_on"]["nodes"]):
            assert node["schema"] == "staging", f"{name} reads a source outside staging"


def test_layers_only_read_down(manifest):
    """Staging and intermediate never read marts (identity, built from the base staging models, sits between)."""
    layer = {node["unique_id"]: node["fqn"][1] for node in _models(manifest).values()}
    reads_up = [
        (node["name"], dep)
        for node in _models(manifest).values()
        if node["fqn"][1] in ("staging", "intermediate")
        for dep in node["depends_on"]["nodes"]
        if layer.get(dep) not in (None, "staging", "identity", "intermediate")
    ]
    assert not reads_up, f"models reading a later layer: {reads_up}"


def test_descriptions_reach_the_database_and_consumers_are_exposures(manifest):
    for name, node in _models(manifest).items():
        assert node["config"]["persist_docs"] == {"relation": True, "columns": True}, name
    exposed = {
        dep.split(".")[-1] for exposure in manifest["exposures"].values() for dep in exposure["depends_on"]["nodes"]
    }
    assert {"user_recommendations", "similar_items", "cold_start_recommendations", "runs"} <= exposed


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ("base_shop__events", "event_id"),
        ("base_shop__social_edges", "edge_id"),
        ("fct_interactions", "event_id"),
        ("fct_searches", "search_id"),
        ("fct_orders", "order_id"),
        ("fct_order_lines", "order_line_id"),
        ("fct_reviews", "review_id"),
        ("user_interest_tags", "user_id"),
    ],
)
def test_growing_facts_are_incremental_on_their_key(manifest, model, key):
    config = _models(manifest)[model]["config"]
    assert config["materialized"] == "incremental"
    assert config["unique_key"] == key
    assert config["incremental_strategy"] == "delete+insert"


def _enforced_keys(model: dict) -> tuple[list[list[str]], set[str]]:
    """The unique column sets and the not-null columns Postgres enforces on a model's table: its unique indexes,
    and the constraints (primary key, unique, not null) of an enforced contract; none for a view."""
    if model["config"]["materialized"] == "view":
        return [], set()
    indexed = [index["columns"] for index in model["config"].get("indexes", []) if index.get("unique")]
    if not model["config"].get("contract", {}).get("enforced"):
        return indexed, set()
    keys = [c["columns"] for c in model.get("constraints", []) if c["type"] in ("primary_key", "unique")]
    unique, not_null = indexed + keys, {column for columns in keys for column in columns}
    for name, column in model["columns"].items():
        types = {c["type"] for c in column.get("constraints", [])}
        unique += [[name]] if types & {"primary_key", "unique"} else []
        not_null |= {name} if types & {"primary_key", "not_null"} else set()
    return unique, not_null


def test_keys_are_checked_once_by_a_constraint_or_by_tests(manifest):
    """A key is unique and not null by its table's constraints (an enforced contract, a unique index) or by dbt
    tests, not both: a test of what a constraint enforces cannot fail and reads the table every run
    (docs/quality.md)."""
    by_name = _models(manifest)
    models = {node["unique_id"]: node for node in by_name.values()}
    tests = [
        node for node in manifest["nodes"].values() if node["resource_type"] == "test" and node.get("test_metadata")
    ]
    tested: set[tuple[str, str, tuple[str, ...]]] = set()
    for test in tests:
        name, kwargs = test["test_metadata"]["name"], test["test_metadata"].get("kwargs", {})
        model = models.get(test.get("attached_node"))
        if model is None or name not in ("unique", "not_null", "unique_combination_of_columns"):
            continue
        columns = tuple(kwargs.get("combination_of_columns") or [kwargs["column_name"]])
        unique, not_null = _enforced_keys(model)
        enforced = set(columns) <= not_null if name == "not_null" else sorted(columns) in map(sorted, unique)
        assert not enforced, f"{test['name']}: {model['name']} enforces {columns} as a constraint already"
        tested.add(("unique" if name != "not_null" else name, model["name"], columns))
    # a staging view's key made unique by its base table's partial unique index (macro unique_index_of_kept_rows)
    kept = {
        (name.replace("base_", "stg_", 1), column)
        for name, model in by_name.items()
        for hook in model["config"].get("post-hook", [])
        for column in re.findall(r"unique_index_of_kept_rows\('(\w+)'\)", hook["sql"])
    }
    assert kept == {("stg_shop__events", "event_id"), ("stg_shop__social_edges", "edge_id")}
    for model, key in [
        ("dim_users", "user_id"),
        ("dim_items", "item_id"),
        ("fct_interactions", "event_id"),
        ("fct_reviews", "review_id"),
        ("fct_orders", "order_id"),
        ("stg_shop__events", "event_id"),
        ("stg_shop__users", "user_id"),
    ]:
        unique, not_null = _enforced_keys(by_name[model])
        assert [key] in unique or ("unique", model, (key,)) in tested or (model, key) in kept, (model, key)
        assert key in not_null or ("not_null", model, (key,)) in tested, (model, key)


def test_row_checks_of_contract_tables_are_constraints(manifest):
    """A contract table rebuilt every run checks its rows when they are written (not null, check constraints), not
    by a dbt test that reads the table again (docs/quality.md); an incremental table keeps its tests: a constraint
    reaches an existing table only with a full refresh. Checks relative to ``as_of`` stay tests."""
    models = {node["unique_id"]: node for node in _models(manifest).values()}
    row_tests = ("not_null", "accepted_values", "accepted_range", "expression_is_true")
    for test in manifest["nodes"].values():
        model = models.get(test.get("attached_node"))
        if (
            test["resource_type"] != "test"
            or model is None
            or test.get("test_metadata", {}).get("name") not in row_tests
        ):
            continue
        if model["config"]["materialized"] == "table" and model["config"].get("contract", {}).get("enforced"):
            assert "as_of" in json.dumps(test["test_metadata"]["kwargs"]), (
                f"{test['name']}: a constraint of {model['name']}"
            )
    checks = {
        column["name"]: constraint["expression"]
        for column in _models(manifest)["user_profiles"]["columns"].values()
        for constraint in column.get("constraints", [])
        if constraint["type"] == "check"
    }
    assert checks["lifecycle_stage"] == "lifecycle_stage in ('new', 'active', 'at_risk', 'churned')"


def test_tricky_logic_has_unit_tests(manifest):
    unit_tested = {node["model"] for node in manifest.get("unit_tests", {}).values()}
    assert {
        "user_rfm",
        "user_lifecycle",
        "user_interest_tags",
        "base_shop__events",
        "fct_reviews",
        "fct_impressions",
        "user_text_interests",
        "text_term_idf",
        "user_category_sentiment",
    } <= unit_tested
