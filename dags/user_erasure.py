"""Erase the users whose erasure was requested: every schema, an audit row, kept out of later loads.

Queue a request with ``recsys erase-user <shop user id> --queue`` (it waits in ``quality.erasure_requests``);
this DAG erases every queued person hourly, or at once with ``airflow dags trigger user_erasure``. The id never
goes into the DAG run's conf, which Airflow keeps for good. The pseudonymization key comes from
``RECSYS_PSEUDONYM_KEY`` or the Airflow connection ``pseudonym_key`` (its password). Wiring only: see
``recsys.quality.erasure``.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task


def notify_failure(context: dict) -> None:
    """on_failure_callback: post the failure to ``RECSYS_ALERT_WEBHOOK_URL`` (see ``recsys.orchestration.notify``)."""
    from recsys.orchestration import notify

    notify.notify_failure(context)


@dag(
    schedule="@hourly",
    start_date=pendulum.datetime(2000, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["recsys", "privacy"],
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "owner": "data-platform",
        "execution_timeout": timedelta(minutes=30),
        "on_failure_callback": notify_failure,
    },
    doc_md=__doc__,
)
def user_erasure():
    """Remove the requested users from every schema and the online store; audit without personal data."""

    @task
    def erase() -> dict:
        """One transaction per request: delete the person's rows everywhere and the request, audit; then Redis."""
        from recsys.orchestration import tasks

        return tasks.erase_requested()

    erase()


user_erasure()
