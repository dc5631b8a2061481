"""What the Airflow tasks call: thin wrappers that find the warehouse and return small dicts for XCom."""

from __future__ import annotations

import logging
import os
from datetime import datetime
from pathlib import Path

from recsys.db import keystore
from recsys.db.settings import check_environment
from recsys.db.warehouse import connect, warehouse_url
from recsys.ingest import landing, load

log = logging.getLogger(__name__)


def warehouse_dsn() -> str:
    """The warehouse DSN: the Airflow connection ``warehouse`` inside Airflow, else ``warehouse_url()``.

    Every task starts here, so a misspelt ``RECSYS_*`` variable stops it (:mod:`recsys.db.settings`).
    """
    check_environment()
    try:
        from airflow.sdk import Connection
    except ImportError:
        return warehouse_url()
    return Connection.get("warehouse").get_uri()


def run_id_for(data_interval_end: datetime) -> str:
    """One model run per data interval, so a re-run of the interval replaces its rows."""
    return f"run_{data_interval_end:%Y%m%dT%H%M%S}"


def landing_dir(param: str | None) -> Path:
    """The landing directory to load: the DAG param, else ``RECSYS_LANDING_DIR``; inside ``RECSYS_LANDING_ROOT``.

    A deployment sets ``RECSYS_LANDING_ROOT`` (docker-compose: ``/opt/landing``) so that a user who can
    trigger the DAG cannot make a worker read any other path; symlinks and ``..`` are resolved first.

    Raises
    ------
    ValueError
        No directory given, or one outside the configured root.
    """
    path = param or os.environ.get("RECSYS_LANDING_DIR")
    if not path:
        raise ValueError("no landing directory: pass the DAG param landing_dir or set RECSYS_LANDING_DIR")
    root = os.environ.get("RECSYS_LANDING_ROOT")
    if root and not Path(path).resolve().is_relative_to(Path(root).resolve()):
        raise ValueError(f"landing_dir {path!r} is outside the landing root {root!r} (RECSYS_LANDING_ROOT)")
    return Path(path)


def load_batch(landing_path: str | None, batch_id: str) -> dict:
    """Load one batch of landing files into ``raw``, and the serving API's events of the day (``api-<batch id>``)
    when the API drained some; return totals per table."""
    directory = landing_dir(landing_path)
    api_batch = f"{landing.API_BATCH_PREFIX}{batch_id}"
    totals = {}
    with connect(warehouse_dsn()) as conn:
        for batch in [batch_id, *([api_batch] if (directory / api_batch).is_dir() else [])]:
            for row in load.load_landing(conn, directory, batch, key=pseudonym_key()):
                name = row["table_name"] if batch == batch_id else f"{api_batch}.{row['table_name']}"
                totals[name] = {
                    key: row[key] for key in ("rows_read", "rows_loaded", "rows_rejected", "rows_unchanged")
                }
    return totals


def score_review_sentiment() -> dict:
    """VADER sentiment of the staged reviews whose text is new or changed (:mod:`recsys.features.sentiment`)."""
    from recsys.features import sentiment  # imported here: VADER's lexicon loads on first use

    with connect(warehouse_dsn()) as conn:
        return sentiment.score_new_reviews(conn)


def train_and_evaluate(run_id: str, data_interval_start: datetime, data_interval_end: datetime) -> dict:
    """Search, evaluate and choose the champion; on an incremental day carry the last full run's champion instead
    (:mod:`recsys.orchestration.schedule`)."""
    from recsys.orchestration import (
        schedule,
        training,  # imported here: pulls in implicit and scikit-learn
    )

    with connect(warehouse_dsn()) as conn:
        if schedule.is_incremental(conn, data_interval_start, data_interval_end):
            return schedule.carry_champion(conn, run_id, data_interval_start, data_interval_end)
        return training.train_and_evaluate(conn, run_id, data_interval_start, data_interval_end)


def evaluate_search(run_id: str, data_interval_start: datetime, data_interval_end: datetime) -> dict:
    """Fit the personalized search ranker and score it against text match on held-out searches (full runs only:
    an incremental day keeps the last full run's evaluation)."""
    from recsys.orchestration import schedule
    from recsys.usecases import search  # imported here: pulls in scikit-learn

    with connect(warehouse_dsn()) as conn:
        if schedule.is_incremental(conn, data_interval_start, data_interval_end):
            return {"skipped": "incremental run: the last full run's search evaluation stands"}
        return search.evaluate_search(conn, run_id, data_interval_end)


def generate_recommendations(run_id: str, data_interval_end: datetime) -> dict:
    """The run's lists (an incremental run's: the touched users', the others' carried over); with ``[experiment]
    challenger`` in models.toml, the challenger's lists too."""
    from recsys.models import registry
    from recsys.orchestration import challenger, publishing, schedule

    with connect(warehouse_dsn()) as conn:
        rescore = schedule.rescore_for(conn, run_id)
        result = publishing.generate_recommendations(conn, run_id, data_interval_end, rescore=rescore)
        model = registry.load_model_config()["experiment"]["challenger"]
        if model:
            result |= challenger.recommend_challenger(conn, run_id, data_interval_end, model)
        return result


def evaluate_online() -> dict:
    """Click-through and conversion of the served lists (``analytics.fct_impressions``) in ``ml.model_evaluations``."""
    from recsys.evaluation import online

    with connect(warehouse_dsn()) as conn:
        return online.evaluate_online(conn)


def target_promotions(run_id: str, data_interval_end: datetime) -> dict:
    """Evaluate promotion targeting on held-out promotions and refit (full runs only), and write the active
    promotions' targets to ml."""
    from recsys.orchestration import schedule
    from recsys.usecases import promotions  # imported here: scikit-learn

    with connect(warehouse_dsn()) as conn:  # an incremental run carries the full run's model
        return promotions.target_promotions(
            conn, run_id, data_interval_end, carried_from=schedule.carried_from(conn, run_id)
        )


def _gate(check, *args) -> dict:
    """Run a quality gate; a failed critical expectation fails the task without retries (it is not transient)."""
    from recsys.quality.gates import QualityGateError

    dsn = warehouse_dsn()
    with connect(dsn) as conn:
        try:
            return check(conn, dsn, *args)
        except QualityGateError as error:
            try:
                from airflow.sdk.exceptions import AirflowFailException
            except ImportError:
                raise error from None
            raise AirflowFailException(str(error)) from error


def check_raw(batch_id: str, data_interval_end: datetime) -> dict:
    """The ``raw`` quality gate on the batch just loaded (:mod:`recsys.quality.gates`); fails on a critical check."""
    from recsys.quality import gates  # imported here: Great Expectations and dbt load inside

    return _gate(gates.check_raw, run_id_for(data_interval_end), batch_id, data_interval_end)


def check_marts_and_recs(data_interval_end: datetime) -> dict:
    """The ``marts_and_recs`` quality gate on the marts and the run about to be published."""
    from recsys.quality import gates

    return _gate(gates.check_marts_and_recs, run_id_for(data_interval_end))


def swap_recs(data_interval_end: datetime, started_at: datetime | None = None) -> dict:
    """Publish the run: swap the build schema in for ``recs`` in one transaction (:mod:`recsys.serving.publish`).

    Rows of persons erased since ``started_at`` (the DAG run's start; every erased person when ``None``) that
    the run wrote anyway are swept first.
    """
    from recsys.serving import publish

    with connect(warehouse_dsn()) as conn:
        return publish.swap_recs(conn, run_id_for(data_interval_end), erased_since=started_at)


def pseudonym_key() -> str:
    """``RECSYS_PSEUDONYM_KEY``, else the password of the Airflow connection ``pseudonym_key`` (checked)."""
    if os.environ.get("RECSYS_PSEUDONYM_KEY"):
        return keystore.check_key(os.environ["RECSYS_PSEUDONYM_KEY"])
    from airflow.sdk import Connection

    return keystore.check_key(Connection.get("pseudonym_key").password)


def erase_requested() -> dict:
    """Erase every person queued in ``quality.erasure_requests`` (``recsys erase-user --queue``), oldest first.

    Each erasure deletes its request in its own transaction, so a retry goes on where a failure stopped.
    Returns counts only: no id reaches XCom or the log.
    """
    from recsys.quality import erasure

    erased, rows = 0, 0
    with connect(warehouse_dsn()) as conn:
        while (shop_user_id := erasure.next_request(conn)) is not None:
            rows += erase_and_forget(conn, shop_user_id, pseudonym_key())["total"]
            erased += 1
    return {"requests_erased": erased, "rows_deleted": rows}


def erase_and_forget(conn, shop_user_id: str, key: str) -> dict:
    """Erase the person in the warehouse, then delete their online store keys recorded by the erasure."""
    from recsys.quality import erasure

    result = erasure.erase_user(conn, shop_user_id, key)
    # the person's keys were recorded in the erasure's transaction: a retry after a crash here finds them
    user_keys = erasure.pending_online_keys(conn)
    deleted = forget_online(user_keys)
    erasure.online_keys_forgotten(conn, user_keys)
    return {**result, "online_keys_deleted": deleted}


def forget_online(user_keys: list[str]) -> int | None:
    """Delete an erased person's keys (:func:`recsys.quality.erasure.person_keys`) from the online store when
    ``REDIS_URL`` is set (None: no store)."""
    from recsys.serving import online

    client = online.redis_client()
    return None if client is None else sum(online.forget_user(client, user_id) for user_id in user_keys)


def push_online(data_interval_end: datetime) -> dict:
    """Copy the published run to the Redis online store (:mod:`recsys.serving.online`) when ``REDIS_URL`` is set."""
    from recsys.serving import online

    client = online.redis_client()
    if client is None:
        log.info("REDIS_URL not set: skipping the online store")
        return {"skipped": True}
    try:
        with connect(warehouse_dsn()) as conn:
            return online.push_online(conn, client, run_id_for(data_interval_end))
    finally:
        client.close()
