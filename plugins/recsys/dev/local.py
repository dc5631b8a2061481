"""The local run behind ``make run``: warehouse, Airflow home, one DAG run, a summary.

Everything lives in git-ignored ``.local/``: the embedded Postgres data,
``AIRFLOW_HOME`` with SQLite metadata, the simulated shop and the secret
pseudonymization key (generated once).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

from recsys.db.warehouse import LOCAL_DIR, REPO_ROOT, EmbeddedPostgres, connect, database_for, dbt_env
from recsys.ingest.deliveries import day_folders
from recsys.ingest.load import load_new_days

log = logging.getLogger(__name__)

DAG_ID = "recsys_pipeline"
BIN = Path(sys.executable).parent
DEFAULT_SHOP = {"users": 20_000, "items": 2_000, "days": 90, "seed": 7}


def pseudonym_key() -> str:
    """``RECSYS_PSEUDONYM_KEY`` if set, else a random key kept in ``.local/pseudonym.key``."""
    if os.environ.get("RECSYS_PSEUDONYM_KEY"):
        return os.environ["RECSYS_PSEUDONYM_KEY"]
    path = LOCAL_DIR / "pseudonym.key"
    if not path.exists():
        LOCAL_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def existing_pseudonym_key() -> str:
    """The key the data was pseudonymized with: ``RECSYS_PSEUDONYM_KEY``, else the local key file; never a new one."""
    if os.environ.get("RECSYS_PSEUDONYM_KEY"):
        return os.environ["RECSYS_PSEUDONYM_KEY"]
    path = LOCAL_DIR / "pseudonym.key"
    if not path.exists():
        raise RuntimeError(f"no pseudonymization key: set RECSYS_PSEUDONYM_KEY (no {path} either)")
    return path.read_text().strip()


def environment(url: str, landing_dir: Path | None = None, airflow_home: Path | None = None) -> dict[str, str]:
    """The environment for Airflow, dbt and the tasks, pointing at ``url``."""
    airflow_home = airflow_home or LOCAL_DIR / "airflow"
    env = dict(os.environ)
    env.update(dbt_env(url))
    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "AIRFLOW_CONN_WAREHOUSE": url,
            "RECSYS_PSEUDONYM_KEY": pseudonym_key(),
            "RECSYS_DBT_EXECUTABLE": str(BIN / "dbt"),
            "DBT_PROFILES_DIR": str(REPO_ROOT / "dbt_project"),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
            "DO_NOT_TRACK": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT / "plugins"), os.environ.get("PYTHONPATH")])),
        }
    )
    if landing_dir:
        env["RECSYS_LANDING_DIR"] = str(landing_dir)
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path = REPO_ROOT) -> None:
    log.info("$ %s", " ".join(args))
    subprocess.run(args, env=env, cwd=cwd, check=True)


def prepare_airflow(env: dict[str, str]) -> None:
    """Migrate the Airflow metadata DB (SQLite under AIRFLOW_HOME) and parse the dbt project for cosmos."""
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    _run([str(BIN / "airflow"), "db", "migrate"], env)
    parse_dbt(env)


def parse_dbt(env: dict[str, str]) -> None:
    """Parse the dbt project into ``dbt_project/target``: a first check of it, and the partial parse that the DAG's
    dbt tasks start from (cosmos copies it), parsed with their project environment and their profile and target
    arguments (dbt parses in full when they differ)."""
    dag_env = env | {"RECSYS_RECS_SCHEMA": "recs_build"}
    args = ["parse", "--project-dir", "dbt_project", "--profile", "recsys", "--target", "warehouse", "--quiet"]
    _run([str(BIN / "dbt"), *args], dag_env)


def run_dag(env: dict[str, str], data_day: str) -> None:
    """Run the main DAG once, in process, for the daily interval holding ``data_day`` (YYYY-MM-DD).

    A manual run at midnight D+1 covers the interval [D, D+1), so ``data_day``'s events count.
    """
    run_at = (date.fromisoformat(data_day) + timedelta(days=1)).isoformat()
    _run([str(BIN / "airflow"), "dags", "test", DAG_ID, run_at], env)
    check_published(env["AIRFLOW_CONN_WAREHOUSE"], run_at)


def shop_warehouse(landing_dir: Path | None) -> str:
    """``WAREHOUSE_URL`` if set; else the embedded database of this shop (:func:`database_for`), now current."""
    if os.environ.get("WAREHOUSE_URL"):
        return os.environ["WAREHOUSE_URL"]
    embedded = EmbeddedPostgres()
    embedded.use(database_for(landing_dir))
    return embedded.start()


def main(data: str | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    url = shop_warehouse(Path(data) if data else None)
    log.info("warehouse: %s", url)
    if data:
        landing_dir = Path(data).resolve()
    else:
        from recsys.dev.simulate import simulate

        landing_dir = LOCAL_DIR / "shop"
        if not (landing_dir / "manifest.json").exists():
            log.info("simulating a shop: %s", DEFAULT_SHOP)
            simulate(landing_dir, **DEFAULT_SHOP)
    env = environment(url, landing_dir)
    prepare_airflow(env)
    day = data_day(landing_dir)
    with connect(url) as conn:  # daily folders: every day before the run's own, which the DAG loads
        load_new_days(conn, landing_dir, env["RECSYS_PSEUDONYM_KEY"], before=day)
    run_dag(env, day)
    from recsys.reporting.report import print_summary

    print_summary(url)
    return 0


def data_day(landing_dir: Path) -> str:
    """The last day of a landing directory: its newest day folder, its manifest's ``end_date``, else the day of
    its newest event."""
    days = day_folders(landing_dir)
    if days:
        return days[-1]
    manifest = (
        json.loads((landing_dir / "manifest.json").read_text()) if (landing_dir / "manifest.json").exists() else {}
    )
    return manifest.get("end_date") or _latest_event_date(landing_dir)


def check_published(url: str, run_at: str) -> None:
    """Fail loudly if the run did not publish (``airflow dags test`` exits 0 when it had nothing to run)."""
    from recsys.orchestration.tasks import run_id_for

    run_id = run_id_for(datetime.fromisoformat(run_at))
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("select to_regclass('recs.runs') is not null")
        published = cur.fetchone()[0]
        if published:
            cur.execute("select status from recs.runs where run_id = %s", (run_id,))
            published = cur.fetchone() == ("published",)
    if not published:
        raise RuntimeError(f"the DAG run at {run_at} did not publish run {run_id}; see the Airflow output above")


def _latest_event_date(landing_dir: Path) -> str:
    """The day of the newest event in a landing directory without a manifest end date."""
    import pandas as pd

    times = pd.read_csv(landing_dir / "events.csv", usecols=["event_at"], dtype=str)["event_at"]
    latest = pd.to_datetime(times, utc=True, errors="coerce", format="ISO8601").max()
    return latest.strftime("%Y-%m-%d")
