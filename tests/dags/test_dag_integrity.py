"""DAG integrity: every DAG imports cleanly, has no cycles, retries and tags, and wires the pipeline in order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory, monkeypatch_module):
    from recsys.local import environment, parse_dbt

    env = environment("postgresql://postgres@127.0.0.1:5432/recsys", airflow_home=tmp_path_factory.mktemp("airflow"))
    parse_dbt(env)
    for key in ("AIRFLOW_HOME", "AIRFLOW__CORE__LOAD_EXAMPLES", "AIRFLOW__COSMOS__ENABLE_TELEMETRY",
                "AIRFLOW_CONN_WAREHOUSE", "RECSYS_PSEUDONYM_KEY"):
        monkeypatch_module.setenv(key, env[key])
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"), include_examples=False)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "recsys_pipeline" in dagbag.dags


def test_every_task_has_retries_and_every_dag_tags(dagbag):
    for dag in dagbag.dags.values():
        assert dag.tags, dag.dag_id
        python_tasks = [task for task in dag.tasks if task.task_type == "_PythonDecoratedOperator"]
        assert python_tasks and all(task.retries >= 1 for task in python_tasks), dag.dag_id


def test_pipeline_runs_load_then_dbt_then_models_then_publish(dagbag):
    dag = dagbag.dags["recsys_pipeline"]
    ids = set(dag.task_ids)
    assert {"load", "train_and_evaluate", "recommend"} <= ids
    transform = {task_id for task_id in ids if task_id.startswith("transform.")}
    publish = {task_id for task_id in ids if task_id.startswith("publish.")}
    # one task per dbt model, and its tests, in each group
    assert any(task_id.endswith("dim_users_run") for task_id in transform)
    assert any(task_id.endswith("user_profiles.test") for task_id in transform)
    assert any("user_recommendations" in task_id for task_id in publish)
    assert all(dag.get_task(task_id).upstream_task_ids - ids == set() for task_id in ids)
    load_downstream = dag.get_task("load").get_flat_relative_ids(upstream=False)
    assert transform <= load_downstream and "train_and_evaluate" in load_downstream
    assert publish <= dag.get_task("recommend").get_flat_relative_ids(upstream=False)
    assert "recommend" not in dag.get_task("train_and_evaluate").get_flat_relative_ids(upstream=True)


def test_dag_files_hold_no_sql_or_heavy_imports():
    for path in (REPO / "dags").glob("*.py"):
        text = path.read_text().lower()
        assert "select " not in text and "insert " not in text, path
        assert "\nimport pandas" not in text and "\nimport psycopg2" not in text, path
