"""The failure notifier: a failed task posts one message to the deployment's chat or mail webhook.

A deployment points it at its channel with ``RECSYS_ALERT_WEBHOOK_URL`` (an incoming-webhook URL of
Slack, Mattermost, Teams, or a mail gateway that accepts JSON). Without it the failure is only logged.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from typing import Any

log = logging.getLogger(__name__)

WEBHOOK_SETTING = "RECSYS_ALERT_WEBHOOK_URL"


def failure_message(context: dict[str, Any]) -> str:
    """One line naming the DAG, the task, the run and the error of a failed task's Airflow ``context``."""
    ti = context["ti"]
    return (
        f"recsys: task {ti.dag_id}.{ti.task_id} failed in run {context.get('run_id')} "
        f"(try {getattr(ti, 'try_number', '?')}): {context.get('exception')}"
    )


def notify_failure(context: dict[str, Any], url: str | None = None, timeout: float = 10.0) -> str:
    """Post the failure of a task to the webhook ``url`` (default ``RECSYS_ALERT_WEBHOOK_URL``) as ``{"text": ...}``.

    Parameters
    ----------
    context : dict
        The Airflow task context given to ``on_failure_callback``.
    url : str, optional
        The webhook; default the environment setting. Without one the message is only logged.
    timeout : float
        Seconds to wait for the webhook.

    Returns
    -------
    str
        The message sent (or logged).
    """
    message = failure_message(context)
    url = url or os.environ.get(WEBHOOK_SETTING)
    log.error(message)
    if url:
        request = urllib.request.Request(
            url, data=json.dumps({"text": message}).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                pass
        except OSError:
            log.exception("could not post the failure to %s", WEBHOOK_SETTING)
    return message
