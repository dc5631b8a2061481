"""DAG integrity: every DAG imports cleanly, has no cycles, retries and tags, and wires the pipeline in order."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dagbag():
    """The DAGs as the scheduler parses them (Airflow's home and settings come from tests/conftest.py)."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "recsys_pipeline" in dagbag.dags


def test_every_task_has_retries_and_every_dag_tags(dagbag):
    for dag in dagbag.dags.values():
        assert dag.tags, dag.dag_id
        python_tasks = [task for task in dag.tasks if task.task_type == "_PythonDecoratedOperator"]
        assert python_tasks and all(task.retries >= 1 for task in python_tasks), dag.dag_id


def test_pipeline_runs_load_gate_dbt_models_gate_publish(dagbag):
    dag = dagbag.dags["recsys_pipeline"]
    ids = set(dag.task_ids)
    assert {"load", "check_raw", "train_and_evaluate", "recommend", "target_promotions", "check_marts_and_recs"} <= ids
    layers = ["dbt_staging", "dbt_marts"]
    transform, publish = set(layers), {"dbt_publish"}
    # one dbt build task per layer, in layer order, each building its models and then their tests; the two
    # intermediate models build with staging
    assert "path:models/intermediate" in dag.get_task("dbt_staging").select
    # review sentiment reads staging and the marts average it
    assert dag.get_task("score_review_sentiment").upstream_task_ids == {"dbt_staging"}
    assert dag.get_task("dbt_marts").upstream_task_ids == {"dbt_staging", "score_review_sentiment"}
    assert all(dag.get_task(task_id).task_type == "DbtBuildLocalOperator" for task_id in transform | publish)
    assert dag.get_task("dbt_publish").select == "tag:publish"
    assert all(dag.get_task(layer).exclude == "tag:publish" for layer in layers)

    def downstream(task_id: str) -> set[str]:
        return dag.get_task(task_id).get_flat_relative_ids(upstream=False)

    # load -> check_raw -> transform: no dbt task starts before the raw gate
    assert dag.get_task("check_raw").upstream_task_ids == {"load"}
    assert transform <= downstream("check_raw") and "train_and_evaluate" in downstream("check_raw")
    assert not transform & dag.get_task("check_raw").get_flat_relative_ids(upstream=True)
    # train_and_evaluate -> (evaluate_search beside target_promotions) -> recommend -> check_marts_and_recs -> publish
    assert dag.get_task("target_promotions").upstream_task_ids == {"train_and_evaluate"}
    assert dag.get_task("recommend").upstream_task_ids == {"evaluate_search", "target_promotions", "evaluate_online"}
    # the online evaluation of the served lists reads fct_impressions (dbt_marts) and lands before the publish
    assert dag.get_task("evaluate_online").upstream_task_ids == {"train_and_evaluate"}
    assert dag.get_task("check_marts_and_recs").upstream_task_ids == {"recommend"}
    assert publish <= downstream("check_marts_and_recs")
    # publish -> swap_recs: recs.* changes only in the swap, after every recs model and test passed
    assert publish <= dag.get_task("swap_recs").get_flat_relative_ids(upstream=True)
    assert "swap_recs" in downstream("check_marts_and_recs")
    # swap_recs -> push_online: Redis gets only a published run, and push_online is the last task
    assert dag.get_task("swap_recs").downstream_task_ids == {"push_online"}
    assert dag.get_task("push_online").upstream_task_ids == {"swap_recs"}
    assert not dag.get_task("push_online").downstream_task_ids
    assert "recommend" not in dag.get_task("train_and_evaluate").get_flat_relative_ids(upstream=True)
    assert dag.get_task("evaluate_search").upstream_task_ids == {"train_and_evaluate"}
    assert "target_promotions" not in dag.get_task("evaluate_search").get_flat_relative_ids(upstream=True)


def test_every_task_has_a_timeout_and_the_failure_notifier(dagbag):
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            assert task.execution_timeout is not None, task.task_id
            assert [callback.__name__ for callback in task.on_failure_callback] == ["notify_failure"], task.task_id


def test_swap_recs_publishes_the_recs_asset(dagbag):
    outlets = dagbag.dags["recsys_pipeline"].get_task("swap_recs").outlets
    assert [(asset.name, asset.uri) for asset in outlets] == [("recs_published", "recsys://warehouse/recs")]


def test_dag_files_hold_no_sql_or_heavy_imports():
    for path in (REPO / "dags").glob("*.py"):
        text = path.read_text().lower()
        assert not re.search(r"\bselect\b[^\n]*\bfrom\b|\binsert\s+into\b|\bcreate\s+table\b", text), path
        assert "\nimport pandas" not in text and "\nimport psycopg2" not in text, path


def test_airflow_loads_no_module_of_the_package_as_a_plugin():
    """plugins/.airflowignore keeps recsys out of Airflow's plugin loading: a task starts without importing it."""
    from airflow._shared.module_loading import find_path_from_directory

    assert list(find_path_from_directory(str(REPO / "plugins"), ".airflowignore", "glob")) == []
