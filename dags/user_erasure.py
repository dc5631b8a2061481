"""Erase one user on request (right to erasure): every schema, an audit row, kept out of later loads.

Trigger with the shop's own user id, e.g.
``airflow dags trigger user_erasure --conf '{"shop_user_id": "U000123"}'``.
The pseudonymization key comes from ``RECSYS_PSEUDONYM_KEY`` or the Airflow
connection ``pseudonym_key`` (its password). Wiring only: see ``recsys.quality.erasure``.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task


def notify_failure(context: dict) -> None:
    """on_failure_callback: post the failure to ``RECSYS_ALERT_WEBHOOK_URL`` (see ``recsys.orchestration.notify``)."""
    from recsys.orchestration import notify

    notify.notify_failure(context)


@dag(
    schedule=None,
    start_date=pendulum.datetime(2000, 1, 1, tz="UTC"),
    catchup=False,
    tags=["recsys", "privacy"],
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "owner": "data-platform",
        "execution_timeout": timedelta(minutes=30),
        "on_failure_callback": notify_failure,
    },
    params={"shop_user_id": Param(type="string", minLength=1, description="the shop's own user id")},
    doc_md=__doc__,
)
def user_erasure():
    """Remove one user from raw, staging, marts, recs and ml; audit without personal data."""

    @task
    def erase(params=None) -> dict:
        """One transaction: delete the user's rows everywhere, add them to quality.erased_users, audit."""
        from recsys.orchestration import tasks

        return tasks.erase_user(params["shop_user_id"])

    erase()


user_erasure()
