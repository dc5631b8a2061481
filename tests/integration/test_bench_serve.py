"""``make bench-serve`` end to end on a tiny published run: a real uvicorn server, Redis and Postgres."""

from __future__ import annotations

import math
import os
import urllib.parse

from recsys.dev import bench_serve


def test_bench_serve_prints_a_row_per_endpoint_without_errors(database, monkeypatch, capsys):
    server = urllib.parse.urlsplit(database)._replace(path="/postgres").geturl()
    monkeypatch.setenv("WAREHOUSE_URL", server)
    monkeypatch.setenv("REDIS_URL", os.environ.get("RECSYS_TEST_REDIS_URL_BENCH", "redis://127.0.0.1:6379/13"))
    rows = bench_serve.main(["--users", "300", "--items", "50", "--requests", "30", "--rate", "1000", "--clients", "2"])
    assert [row["endpoint"] for row in rows] == list(bench_serve.ENDPOINTS)
    for row in rows:
        assert row["requests"] == 30 and row["errors"] == 0
        assert all(math.isfinite(row[q]) and row[q] > 0 for q in ("p50", "p95", "p99"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:3] == ["endpoint", "requests", "errors"] and len(lines) == 2 + len(rows)
