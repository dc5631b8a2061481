"""The failure notifier posts one JSON message per failed task to the configured webhook."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

from recsys.orchestration import notify


def test_a_failed_task_is_posted_to_the_configured_webhook(monkeypatch):
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.handle_request)
    thread.start()
    monkeypatch.setenv(notify.WEBHOOK_SETTING, f"http://127.0.0.1:{server.server_port}/hook")
    context = {
        "ti": SimpleNamespace(dag_id="recsys_pipeline", task_id="check_raw", try_number=3),
        "run_id": "manual__2024-06-02",
        "exception": ValueError("critical expectation failed"),
    }
    notify.notify_failure(context)
    thread.join(timeout=30)
    server.server_close()
    assert received == [
        {
            "text": "recsys: task recsys_pipeline.check_raw failed in run manual__2024-06-02 (try 3): "
            "critical expectation failed"
        }
    ]


def test_without_a_webhook_the_failure_is_only_logged(monkeypatch, caplog):
    monkeypatch.delenv(notify.WEBHOOK_SETTING, raising=False)
    context = {"ti": SimpleNamespace(dag_id="d", task_id="t", try_number=1), "run_id": "r", "exception": "boom"}
    assert notify.notify_failure(context) == "recsys: task d.t failed in run r (try 1): boom"
    assert "boom" in caplog.text
