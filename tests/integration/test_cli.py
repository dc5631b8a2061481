"""The ``recsys`` command line, run as a user would run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import psycopg2

RECSYS = str(Path(sys.executable).parent / "recsys")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def recsys(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([RECSYS, *args], capture_output=True, text=True, check=check)


def test_warehouse_url_prints_a_url_psycopg_can_query():
    url = recsys("warehouse-url").stdout.strip()
    assert url.startswith("postgresql://") and "@127.0.0.1:" in url
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("select 40 + 2")
        assert cur.fetchone() == (42,)


def test_simulate_and_import_write_the_landing_format(tmp_path):
    shop = tmp_path / "shop"
    counts = json.loads(
        recsys("simulate", "--users", "200", "--items", "60", "--days", "14", "--out", str(shop)).stdout
    )
    assert (shop / "manifest.json").exists() and (shop / "truth" / "user_truth.csv").exists()
    second_accounts = (pd.read_csv(shop / "truth" / "persons.csv")["link"] != "self").sum()
    assert counts["users"] == 200 + second_accounts
    retail = tmp_path / "retail"
    report = json.loads(
        recsys("import", "online-retail", str(FIXTURES / "online_retail_small.csv"), "--out", str(retail)).stdout
    )
    assert report["rows_read"] == report["rows_used"] + report["rows_rejected"]
    assert {"users.csv", "items.csv", "events.csv", "orders.csv", "order_lines.csv"} <= {
        p.name for p in retail.iterdir()
    }


def test_bad_input_gives_a_clear_error_not_a_traceback(tmp_path):
    result = recsys(
        "import", "interactions", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "out"), check=False
    )
    assert result.returncode == 2
    assert result.stderr.startswith("recsys: error:") and "Traceback" not in result.stderr
