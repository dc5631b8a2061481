"""Shared fixtures: a real Postgres database per test session, and a small simulated shop.

The database lives in the embedded warehouse (pgserver) by default, or on the
server named by ``RECSYS_TEST_SERVER_URL`` (e.g. postgresql://postgres@127.0.0.1:5432/postgres);
either way it is created fresh and dropped at the end.

``make test`` runs the test files side by side in two processes (pytest-xdist, ``--dist loadfile``: a file's
tests, and its module fixtures, stay in one process). Each process has its own Airflow home and data docs
folder; they share the embedded server (whichever asks first starts it, under its lock).
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest

from recsys.db.warehouse import EmbeddedPostgres, create_database

# Airflow reads its settings once, at first import: give the test session its own home first.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="recsys-test-airflow-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__COSMOS__ENABLE_TELEMETRY"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parents[1] / "dags")
os.environ.setdefault("RECSYS_PSEUDONYM_KEY", "test-only-pseudonymization-key-not-a-secret-0123456789")
# the gates prune old runs' data docs: another process's must not be pruned while it writes them
os.environ["RECSYS_GX_DOCS_DIR"] = tempfile.mkdtemp(prefix="recsys-test-gx-docs-")

TEST_SHOP = {"users": 1_500, "items": 300, "days": 60, "seed": 11}


def _server_url() -> str:
    return os.environ.get("RECSYS_TEST_SERVER_URL") or EmbeddedPostgres().start()


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _drop_database(url: str) -> None:
    parts = urlsplit(url)
    conn = psycopg2.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'drop database if exists "{parts.path.lstrip("/")}" with (force)')
    finally:
        conn.close()


@pytest.fixture(scope="session")
def fresh_database():
    """A factory: ``fresh_database()`` returns the URL of a new, empty database dropped after the session;
    ``fresh_database(template=url)`` a new copy of the database at ``url`` (which nobody may be connected to)."""
    created = []

    def make(template: str | None = None) -> str:
        url = _with_database(_server_url(), f"recsys_test_{uuid.uuid4().hex[:10]}")
        if template is None:
            create_database(url)
        else:
            conn = psycopg2.connect(_with_database(url, "postgres"))
            try:
                conn.autocommit = True  # create database runs outside a transaction
                with conn.cursor() as cur:
                    names = (urlsplit(db).path.lstrip("/") for db in (url, template))
                    cur.execute('create database "{}" template "{}"'.format(*names))
            finally:
                conn.close()
        created.append(url)
        return url

    yield make
    for url in created:
        _drop_database(url)


@pytest.fixture
def database(fresh_database):
    """A new empty database for one test."""
    return fresh_database()


@pytest.fixture(scope="session")
def shop(tmp_path_factory):
    """A small simulated shop (landing directory) shared by the session."""
    from recsys.dev.simulate import simulate

    out = tmp_path_factory.mktemp("shop")
    simulate(out, **TEST_SHOP)
    return out


@pytest.fixture(scope="session")
def random_shop():
    """A factory of small random shops: ``random_shop(seed, events, users, items, p, categories, brands)``.

    ``events`` purchases (each with a view a minute before) by uniformly random users over the 6 weeks from
    2026-01-01, of items drawn geometric(``p``) (item 0 the most bought); every item has a category, a brand
    and a price (5 + its number). Returns the :class:`~recsys.features.interactions.Interactions`.
    """
    import numpy as np
    import pandas as pd

    from recsys.features.interactions import SECONDS_PER_DAY, Interactions

    def make(seed: int, events: int, users: int, items: int, p: float, categories: int, brands: int):
        rng = np.random.default_rng(seed)
        who, what = rng.integers(0, users, events), np.minimum(rng.geometric(p, events) - 1, items - 1)
        when = 1_767_225_600.0 + rng.uniform(0, 42 * SECONDS_PER_DAY, events)
        bought = pd.DataFrame(
            {
                "user_id": np.char.add("u", who.astype(str)),
                "item_id": np.char.add("i", what.astype(str)),
                "event_type": "purchase",
                "event_ts": when,
            }
        )
        views = bought.assign(event_type="view", event_ts=when - 60)
        return Interactions.from_frame(pd.concat([views, bought], ignore_index=True)).with_side_data(
            items=pd.DataFrame(
                {
                    "item_id": [f"i{index}" for index in range(items)],
                    "category": [f"c{index % categories}" for index in range(items)],
                    "brand": [f"b{index % brands}" for index in range(items)],
                    "price": 5.0 + np.arange(items),
                }
            )
        )

    return make


@pytest.fixture
def no_rerank(tmp_path, monkeypatch) -> None:
    """Business rules with the diversity re-rank off (``RECSYS_BUSINESS_RULES``), for planted known answers."""
    from recsys.serving import rules

    text = re.sub(r"(?m)^strength = .*$", "strength = 0.0", rules.RULES_FILE.read_text())
    (tmp_path / "business_rules.toml").write_text(text)
    monkeypatch.setenv("RECSYS_BUSINESS_RULES", str(tmp_path / "business_rules.toml"))


#: the schema of each dbt model folder (dbt_project.yml)
MODEL_SCHEMAS = {"marts": "analytics", "recs": "recs", "identity": "identity", "quality": "quality"}
DBT_MODELS = Path(__file__).resolve().parents[1] / "dbt_project" / "models"


def contract_table_ddl(model: str, schema: str | None = None) -> str:
    """``create table`` for a dbt model from its yml: every column with its declared ``data_type``.

    Integration tests that build a small warehouse by hand create the contract tables with this, so their
    tables cannot drift from what dbt builds.
    """
    import yaml

    for path in DBT_MODELS.rglob(f"{model}.yml"):
        (spec,) = [entry for entry in yaml.safe_load(path.read_text())["models"] if entry["name"] == model]
        untyped = [column["name"] for column in spec["columns"] if "data_type" not in column]
        assert not untyped, f"{path}: columns without data_type: {untyped}"
        schema = schema or MODEL_SCHEMAS[path.relative_to(DBT_MODELS).parts[0]]
        columns = ", ".join(f'"{column["name"]}" {column["data_type"]}' for column in spec["columns"])
        return f'create schema if not exists "{schema}"; create table "{schema}"."{model}" ({columns});'
    raise AssertionError(f"no yml for dbt model {model}")


@pytest.fixture(scope="session")
def contract_tables():
    """``contract_tables(url, *models, schema=None)``: create the models' tables as their dbt contracts declare."""

    def create(url: str, *models: str, schema: str | None = None) -> None:
        conn = psycopg2.connect(url)
        try:
            with conn, conn.cursor() as cur:
                for model in models:
                    cur.execute(contract_table_ddl(model, schema))
        finally:
            conn.close()

    return create


@pytest.fixture(scope="session")
def profile_function_ddl(fresh_database, tmp_path_factory) -> str:
    """The ``create function`` of ``analytics.user_profile_features_as_of`` as the dbt project renders it: run once
    (``dbt run-operation install_profile_features`` on a scratch database), then executed in any test database."""
    import subprocess

    from recsys.dev.local import BIN, environment

    url = fresh_database()
    home = tmp_path_factory.mktemp("profile_dbt")
    subprocess.run(
        [str(BIN / "dbt"), "run-operation", "install_profile_features", "--project-dir", str(DBT_MODELS.parent)]
        + ["--target-path", str(home / "target")],
        env=environment(url, airflow_home=home / "airflow"),
        check=True,
        capture_output=True,
    )
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("select pg_get_functiondef('analytics.user_profile_features_as_of'::regproc)")
            definition = cur.fetchone()[0]
    finally:
        conn.close()
    return f"create schema if not exists analytics; set check_function_bodies = off; {definition};"


@pytest.fixture(scope="session")
def profile_warehouse(fresh_database, contract_tables, profile_function_ddl):
    """``profile_warehouse(interactions)``: a new database with the interactions' events and items in the
    contract tables ``fct_interactions`` and ``dim_items`` and the dbt profile function; returns its
    :class:`~recsys.features.profile_source.ProfileSource`.
    """
    import pandas as pd

    from recsys.db import frames
    from recsys.features.interactions import EVENT_TYPES
    from recsys.features.profile_source import ProfileSource

    def make(interactions):
        url = fresh_database()
        contract_tables(url, "fct_interactions", "dim_items")
        items = interactions.items
        path = items["category_path"].where(items["category_path"] != "", items["category"])
        item_rows = pd.DataFrame(
            {
                "item_id": interactions.item_ids,
                "category": items["category"],
                "subcategory": path.str.rsplit(" > ", n=1).str[-1],
                "category_path": path,
                "brand": items["brand"].replace("", None),
                "price": items["price"],
            }
        )
        event_rows = pd.DataFrame(
            {
                "event_id": [f"e{index}" for index in range(interactions.n_events)],
                "user_id": interactions.user_ids[interactions.user_index],
                "account_user_id": interactions.user_ids[interactions.user_index],
                "item_id": interactions.item_ids[interactions.item_index],
                "event_type": pd.Series(EVENT_TYPES, dtype=object)[interactions.event_type].to_numpy(),
                "event_at": pd.to_datetime(interactions.event_ts, unit="s", utc=True),
            }
        )
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute(profile_function_ddl)
            frames.copy_frame(conn, "analytics.dim_items", item_rows)
            frames.copy_frame(conn, "analytics.fct_interactions", event_rows)
        conn.close()
        return ProfileSource(url)

    return make
