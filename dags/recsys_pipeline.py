"""The main pipeline: load -> quality gate -> dbt build (with tests) -> train, evaluate, recommend, target
promotions -> gate -> publish.

Publishing is atomic: ``dbt_publish`` builds the recs models and their tests in the build
schema ``recs_build`` (``RECSYS_RECS_SCHEMA``), then ``swap_recs`` swaps it in for ``recs`` in one
transaction, so readers see the previous run or the new one, never a mix. ``push_online`` then copies
the published run to the Redis online store when ``REDIS_URL`` is set (``recsys.serving.online``).
``swap_recs`` updates the Asset ``recs_published``: schedule a downstream DAG on it.

Wiring only: every task calls into the ``recsys`` package (``plugins/recsys``).
The two quality gates (Great Expectations, ``dbt source freshness``) stop the
run when a critical expectation fails, so nothing bad reaches the next layer.
dbt runs through astronomer-cosmos, one ``dbt build`` task per layer (staging with intermediate,
marts, publish) in process: no dbt start-up per model; dbt orders models and tests inside a layer.

Daily runs are incremental: ``load`` loads the interval's day folder only, the growing facts and the interest
tags are incremental dbt models (the param ``full_refresh`` rebuilds them), and on the days that are not in
``RECSYS_FULL_RUN_DAYS`` the model tasks carry the last full run's champion and re-score only the users the day
touched (``recsys.orchestration.schedule``; docs/operate/daily-runs.md).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import Asset, BaseOperator, Param, dag, task
from airflow.timetables.interval import CronDataIntervalTimetable
from cosmos import ProfileConfig
from cosmos import settings as cosmos_settings
from cosmos.constants import InvocationMode
from cosmos.operators.local import DbtBuildLocalOperator

DBT_PROJECT = Path(__file__).resolve().parents[1] / "dbt_project"

# dbt reads the warehouse from the Airflow connection ``warehouse`` (templated at run time)
DBT_ENV = {
    "RECSYS_PGHOST": "{{ conn.warehouse.host }}",
    "RECSYS_PGPORT": "{{ conn.warehouse.port }}",
    "RECSYS_PGUSER": "{{ conn.warehouse.login }}",
    "RECSYS_PGPASSWORD": "{{ conn.warehouse.password or '' }}",
    "RECSYS_PGDATABASE": "{{ conn.warehouse.schema }}",
}
AS_OF = "{{ data_interval_end.isoformat() }}"
RUN_ID = "run_{{ data_interval_end.strftime('%Y%m%dT%H%M%S') }}"
# the Asset a shop's or analyst's DAG schedules on: updated each time swap_recs publishes a run into recs.*
RECS_PUBLISHED = Asset(name="recs_published", uri="recsys://warehouse/recs")
BUILD_SCHEMA = "recs_build"  # recsys.serving.publish.BUILD_SCHEMA (not imported: nothing heavy at import)
# the run's settings for dbt as environment, not --vars: dbt re-parses the whole project when --vars change, so
# every task and every daily run reuses one partial parse (dbt_project/macros/as_of.sql). dbt's unit tests check
# SQL logic on fixed inputs: the test suite runs them (tests/integration/test_pipeline_e2e.py), not each run.
RUN_SETTINGS = {
    "RECSYS_AS_OF": AS_OF,
    "RECSYS_RUN_ID": RUN_ID,
    "RECSYS_RECS_SCHEMA": BUILD_SCHEMA,
    "DBT_EXCLUDE_RESOURCE_TYPES": "unit_test",
}


def notify_failure(context: dict) -> None:
    """on_failure_callback: post the failure to ``RECSYS_ALERT_WEBHOOK_URL`` (see ``recsys.orchestration.notify``)."""
    from recsys.orchestration import notify

    notify.notify_failure(context)


# dbt by layer: one ``dbt build`` (models, then their tests) per layer, in process (dbt's runner).
# identity, quality and intermediate sit with staging: staging reads identity, quality reads only staging, and the
# two intermediate models (bot users, order totals) are not worth a task of their own (a dbt start-up, 2-3 s a run).
DBT_LAYERS = {
    "staging": "path:models/staging path:models/identity path:models/quality path:models/intermediate",
    "marts": "path:models/marts",
}


def dbt_build(layer: str, select: str, exclude: str | None = None) -> BaseOperator:
    """One Airflow task running ``dbt build`` on a layer; its log lists each model and test with its result."""
    return DbtBuildLocalOperator(
        task_id=f"dbt_{layer}",
        doc_md=f"dbt build of the {layer} layer (``--select {select}``): each model, then its tests.",
        project_dir=str(DBT_PROJECT),
        profile_config=ProfileConfig(
            profile_name="recsys", target_name="warehouse", profiles_yml_filepath=DBT_PROJECT / "profiles.yml"
        ),
        dbt_executable_path=os.environ.get("RECSYS_DBT_EXECUTABLE", "dbt"),
        invocation_mode=InvocationMode.DBT_RUNNER,
        select=select,
        exclude=exclude,
        # a test runs in the first layer where all the models it reads are built (relationships across layers)
        indirect_selection="buildable",
        env=DBT_ENV | RUN_SETTINGS,
        append_env=True,
        install_deps=False,
        # dbt's partial parse carried from one layer's task to the next (1 s, not a 4-6 s full parse per layer)
        cache_dir=cosmos_settings.cache_dir / "recsys_pipeline",
        # the DAG param full_refresh rebuilds the incremental models (facts, interest tags) from all of raw
        full_refresh="{{ params.full_refresh }}",
        emit_datasets=False,
        retries=0,
    )


@dag(
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2000, 1, 1, tz="UTC"),  # any history can be (back)filled
    catchup=False,
    max_active_runs=1,
    tags=["recsys", "pipeline"],
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "owner": "data-platform",
        "execution_timeout": timedelta(hours=2),
        "on_failure_callback": notify_failure,
    },
    params={
        "landing_dir": Param(
            None, type=["null", "string"], description="landing directory; default env RECSYS_LANDING_DIR"
        ),
        "full_refresh": Param(
            False,
            type="boolean",
            description="dbt --full-refresh: rebuild the incremental facts and profiles from all of raw",
        ),
    },
    doc_md=__doc__,
)
def recsys_pipeline():
    """Build profiles and recommendations for one data interval."""

    @task
    def load(params=None, data_interval_start=None) -> dict:
        """Load the interval's landing batch into raw (COPY, bad rows quarantined, re-load replaces)."""
        from recsys.orchestration import tasks

        return tasks.load_batch(params["landing_dir"], data_interval_start.strftime("%Y-%m-%d"))

    @task
    def check_raw(data_interval_start=None, data_interval_end=None) -> dict:
        """Quality gate on the batch just loaded: schema, nulls, ids, ranges, timestamps, duplicates, freshness."""
        from recsys.orchestration import tasks

        return tasks.check_raw(data_interval_start.strftime("%Y-%m-%d"), data_interval_end)

    @task
    def score_review_sentiment() -> dict:
        """VADER sentiment of reviews with a new or changed text, for the marts to average per user and category."""
        from recsys.orchestration import tasks

        return tasks.score_review_sentiment()

    @task
    def train_and_evaluate(data_interval_start=None, data_interval_end=None) -> dict:
        """Fit every model before the evaluation cutoff, score them on the days after it, pick the champion."""
        from recsys.orchestration import tasks

        return tasks.train_and_evaluate(tasks.run_id_for(data_interval_end), data_interval_start, data_interval_end)

    @task
    def evaluate_search(data_interval_start=None, data_interval_end=None) -> dict:
        """Fit the search ranker before the test cutoff; MRR/NDCG of held-out searches before and after re-ranking."""
        from recsys.orchestration import tasks

        return tasks.evaluate_search(tasks.run_id_for(data_interval_end), data_interval_start, data_interval_end)

    @task
    def recommend(data_interval_end=None) -> dict:
        """Refit the champion on all data and write every user's list, similar items and cold-start lists to ml."""
        from recsys.orchestration import tasks

        return tasks.generate_recommendations(tasks.run_id_for(data_interval_end), data_interval_end)

    @task
    def target_promotions(data_interval_end=None) -> dict:
        """Rank users by propensity to redeem each active promotion; evaluate on held-out promotions."""
        from recsys.orchestration import tasks

        return tasks.target_promotions(tasks.run_id_for(data_interval_end), data_interval_end)

    @task
    def check_marts_and_recs(data_interval_end=None) -> dict:
        """Quality gate on the profiles and the run about to be published (ml.*), before recs.* is built."""
        from recsys.orchestration import tasks

        return tasks.check_marts_and_recs(data_interval_end)

    @task(outlets=[RECS_PUBLISHED])
    def swap_recs(data_interval_end=None, dag_run=None) -> dict:
        """Swap the build schema (tested by the publish group) in for recs in one transaction: atomic publish."""
        from recsys.orchestration import tasks

        return tasks.swap_recs(data_interval_end, dag_run.start_date if dag_run else None)

    @task
    def evaluate_online() -> dict:
        """Click-through and conversion of what the API served (analytics.fct_impressions), per model, arm, position."""
        from recsys.orchestration import tasks

        return tasks.evaluate_online()

    @task
    def push_online(data_interval_end=None) -> dict:
        """Copy the published run to Redis (when REDIS_URL is set), then flip the store's pointer to it."""
        from recsys.orchestration import tasks

        return tasks.push_online(data_interval_end)

    layers = [dbt_build(layer, select, exclude="tag:publish") for layer, select in DBT_LAYERS.items()]
    # the recs models are built and tested in the build schema; swap_recs then publishes them all at once
    publish = dbt_build("publish", "tag:publish")
    # review sentiment reads staging and is averaged by the marts
    layers[0] >> score_review_sentiment() >> layers[1]
    (
        load()
        >> check_raw()
        >> layers[0]
        >> layers[1]
        >> train_and_evaluate()
        # search, promotions and the online evaluation read the run's features, not each other's rows
        >> [evaluate_search(), target_promotions(), evaluate_online()]
        >> recommend()
        >> check_marts_and_recs()
        >> publish
        >> swap_recs()
        >> push_online()
    )


recsys_pipeline()
