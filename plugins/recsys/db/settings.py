"""Every environment variable the platform reads, in one place; a misspelt ``RECSYS_*`` one is an error.

:data:`SETTINGS` lists each variable with what it means, its default and what reads it, by section of the
settings page: ``docs/reference/settings.md`` is generated from it when the docs site is built
(``docs/hooks.py``), and ``tests/unit/test_settings.py`` checks that every variable the code reads is listed, so
a new setting cannot go undocumented. :func:`check_environment` runs when the ``recsys`` command and the DAG
tasks start: an unknown ``RECSYS_*`` name (``RECSYS_GX_DOCS_KEEP_RUN``) would otherwise be ignored without a
word, so it stops them with the closest valid names. ``RECSYS_TEST_*`` variables belong to the test suite and
are left alone.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from typing import NamedTuple


class Setting(NamedTuple):
    """One environment variable: its name, and its row of the settings page (markdown text)."""

    name: str
    meaning: str
    default: str
    read_by: str = ""


#: the variables by section of the settings page (``docs/reference/settings.md``, where each section has a marker)
SETTINGS: dict[str, tuple[Setting, ...]] = {
    "warehouse": (
        Setting(
            "WAREHOUSE_URL",
            meaning=(
                "the warehouse, a `postgresql://user:password@host:port/dbname` URL, for `make run`, the CLI, the "
                "report and outside Airflow"
            ),
            default="unset: an embedded PostgreSQL 16 from the `pgserver` wheel, started on demand",
            read_by="`recsys.db.warehouse`",
        ),
        Setting(
            "RECSYS_LOCAL_DIR",
            meaning=(
                "the folder for local state: the embedded server's data (`pgdata`), `pseudonym.key`, the local "
                "Airflow home, Great Expectations data docs"
            ),
            default="`.local` of the repository",
            read_by="`recsys.db.warehouse`",
        ),
        Setting(
            "RECSYS_PG_OS_USER",
            meaning=(
                "under root only: the unprivileged OS user the embedded PostgreSQL runs as (PostgreSQL refuses root)"
            ),
            default="`postgres` if that user exists, else `nobody`",
            read_by="`recsys.db.warehouse`",
        ),
        Setting(
            "AIRFLOW_CONN_WAREHOUSE",
            meaning=(
                "the Airflow connection `warehouse`: inside Airflow every task reads the warehouse through it, and "
                "the DAG passes its host, port, login, password and schema to dbt"
            ),
            default=(
                "none inside Airflow (required); `make run` sets it to the warehouse URL; `docker-compose.yml` to the"
                " compose warehouse"
            ),
            read_by="`recsys.orchestration.tasks`, `dags/recsys_pipeline.py`",
        ),
        Setting(
            "RECSYS_PGHOST",
            meaning="dbt's warehouse host (`dbt_project/profiles.yml`)",
            default="`127.0.0.1`",
            read_by="dbt",
        ),
        Setting(
            "RECSYS_PGPORT",
            meaning="dbt's warehouse port",
            default="`5432`",
            read_by="dbt",
        ),
        Setting(
            "RECSYS_PGUSER",
            meaning="dbt's warehouse user",
            default="`postgres`",
            read_by="dbt",
        ),
        Setting(
            "RECSYS_PGPASSWORD",
            meaning="dbt's warehouse password",
            default="empty",
            read_by="dbt",
        ),
        Setting(
            "RECSYS_PGDATABASE",
            meaning="dbt's warehouse database",
            default="none (required)",
            read_by="dbt",
        ),
        Setting(
            "RECSYS_DBT_THREADS",
            meaning=(
                "how many models dbt builds at once; at L scale two profile marts together spill 25+ GB of "
                "temporary files, so a warehouse short of disk runs with 1"
            ),
            default="`2`",
            read_by="dbt",
        ),
    ),
    "secrets": (
        Setting(
            "RECSYS_PSEUDONYM_KEY",
            meaning=(
                "the secret key of the keyed SHA-256 that pseudonymizes user ids, e-mails and phones (stored by the "
                "loader in `keystore.pseudonym_key`, where the dbt macro `pseudonymize` and the loader's erasure "
                "check read it; erasure). At least 32 characters, not a placeholder"
            ),
            default=(
                "`make run` and the CLI: a random key generated once into `RECSYS_LOCAL_DIR/pseudonym.key`; the "
                "erasure DAG: the password of the Airflow connection `pseudonym_key` (e.g. "
                "`AIRFLOW_CONN_PSEUDONYM_KEY`); the loader: required (a clear error without a usable key)"
            ),
            read_by=(
                "`recsys.dev.local`, `recsys.orchestration.tasks`, `recsys.ingest.load`, `recsys.quality.erasure`"
            ),
        ),
        Setting(
            "MYSQL_PASSWORD",
            meaning="the password of `recsys import mysql` when `--url` has none; never logged or written",
            default="empty",
            read_by="`recsys.ingest.mysql_import`",
        ),
    ),
    "inputs": (
        Setting(
            "RECSYS_FULL_RUN_DAYS",
            meaning=(
                "the weekdays (of the data interval's start: `mon` to `sun`, comma-separated, or `all`) whose DAG run"
                " is a full run: hyperparameter search, evaluation, the champion chosen, every list scored; a run on"
                " another day is incremental: it refits the last full run's champion with its parameters on all data"
                " and re-scores only the users touched since the previous run ([daily runs](../operate/daily-runs.md))"
            ),
            default="`all`: every run is a full run",
            read_by="`recsys.orchestration.schedule`",
        ),
        Setting(
            "RECSYS_AS_OF",
            meaning=(
                "dbt's end of the data interval (ISO 8601), 'now' for recency, lifecycle and time decay; the dbt var"
                " `as_of` wins when given. The DAG sets it for its dbt tasks: an environment variable read at"
                " execution keeps dbt's partial parse, changed `--vars` re-parse the whole project"
            ),
            default="none: required by the models that use it (a clear dbt error)",
            read_by="dbt (`macros/as_of.sql`)",
        ),
        Setting(
            "RECSYS_RUN_ID",
            meaning="dbt's run to publish into `recs.*` (publish models only); the dbt var `run_id` wins when given",
            default="none: required by the publish models",
            read_by="dbt (`macros/as_of.sql`)",
        ),
        Setting(
            "RECSYS_RECS_SCHEMA",
            meaning=(
                "the schema dbt builds the `recs` models in; the DAG sets `recs_build`, which `swap_recs` swaps in for"
                " `recs` ([publishing](../operate/publish.md)); the dbt var `recs_schema` wins when given"
            ),
            default="`recs`",
            read_by="dbt (`dbt_project.yml`)",
        ),
        Setting(
            "RECSYS_LANDING_DIR",
            meaning=(
                "the landing directory the DAG's `load` task reads when the DAG param `landing_dir` is not given (a "
                "dated subfolder `<YYYY-MM-DD>/` per interval when present)"
            ),
            default="none: the task fails with an error naming both; `make run` sets it",
            read_by="`recsys.orchestration.tasks`",
        ),
        Setting(
            "RECSYS_LANDING_ROOT",
            meaning=(
                "the folder the DAG param `landing_dir` (and `RECSYS_LANDING_DIR`) must lie inside, after resolving "
                "`..` and symlinks; docker-compose sets `/opt/landing`"
            ),
            default="unset: any directory (the local run)",
            read_by="`recsys.orchestration.tasks`",
        ),
        Setting(
            "RECSYS_ALERT_WEBHOOK_URL",
            meaning='an incoming-webhook URL (chat or mail gateway) every failed task posts `{"text": ...}` to',
            default="unset: the failure is only logged",
            read_by="`recsys.orchestration.notify`",
        ),
        Setting(
            "RECSYS_MODEL_CONFIG",
            meaning=(
                "a copy of `models.toml` to use instead (models, hyperparameters, grids, champion gate, privacy, "
                "promotions, cold start)"
            ),
            default="`plugins/recsys/models/models.toml`",
            read_by="`recsys.models.registry`",
        ),
        Setting(
            "RECSYS_WORKERS",
            meaning=(
                "worker processes for the independent model fits of a run (search trials, test-window refits); "
                "the tables do not depend on it, only the wall time and the memory (each worker holds a copy "
                "of its models)"
            ),
            default="one per core, at most 4",
            read_by="`recsys.models.workers`",
        ),
        Setting(
            "RECSYS_BUSINESS_RULES",
            meaning=(
                "a copy of `business_rules.toml` to use instead (deny lists, brand cap, repeat purchase, diversity)"
            ),
            default="`plugins/recsys/serving/business_rules.toml`",
            read_by="`recsys.serving.rules`",
        ),
        Setting(
            "RECSYS_GX_DOCS_DIR",
            meaning=("where each quality gate writes its Great Expectations data docs (`<run_id>/<gate>/index.html`)"),
            default="`RECSYS_LOCAL_DIR/gx_docs`",
            read_by="`recsys.quality.gates`",
        ),
        Setting(
            "RECSYS_API_TOKEN",
            meaning=(
                "the bearer token clients of `recsys serve` send; the server refuses to start without it (unless "
                "`--insecure-local`)"
            ),
            default="unset",
            read_by="`recsys.cli`",
        ),
        Setting(
            "RECSYS_API_PROFILE_TOKEN",
            meaning=(
                "the bearer token of `GET /v1/users/{id}/profile` "
                "([Serving API](../operate/serving-api.md#the-profile-endpoint)), which the ordinary token cannot "
                "read (403); must differ from `RECSYS_API_TOKEN`"
            ),
            default="unset: no profile endpoint (404)",
            read_by="`recsys.cli`",
        ),
        Setting(
            "RECSYS_GX_DOCS_KEEP_RUNS",
            meaning="data docs of how many runs to keep (the newest; older ones are deleted after each gate)",
            default="`14`",
            read_by="`recsys.quality.gates`",
        ),
        Setting(
            "REDIS_URL",
            meaning=(
                "the Redis online store (e.g. `redis://127.0.0.1:6379/1`): `push_online` copies each published run "
                "there and erasure deletes the user's keys"
            ),
            default="unset: no online store (`push_online` logs that it skips)",
            read_by="`recsys.serving.online`, `recsys.orchestration.tasks`",
        ),
        Setting(
            "RECSYS_DBT_EXECUTABLE",
            meaning="the `dbt` executable cosmos runs for the dbt tasks",
            default="`dbt` on the `PATH`; `make run` sets `.venv/bin/dbt`",
            read_by="`dags/recsys_pipeline.py`",
        ),
        Setting(
            "GX_ANALYTICS_ENABLED",
            meaning="Great Expectations' own usage analytics switch",
            default="set to `False` by the quality gates unless already set",
            read_by="`recsys.quality.gates`",
        ),
    ),
    "compose": (
        Setting(
            "RECSYS_PSEUDONYM_KEY",
            meaning="as above; given to the Airflow services, not to `recsys-api`",
            default="none (required)",
        ),
        Setting("RECSYS_API_TOKEN", meaning="as above (the `recsys-api` service)", default="none (required)"),
        Setting(
            "RECSYS_API_PROFILE_TOKEN",
            meaning="as above (the `recsys-api` service)",
            default="empty: no profile endpoint",
        ),
        Setting(
            "AIRFLOW_JWT_SECRET",
            meaning="the Airflow API server's JWT secret",
            default="none (required)",
        ),
        Setting(
            "AIRFLOW_FERNET_KEY",
            meaning="the key Airflow encrypts connections and variables with",
            default="none (required)",
        ),
        Setting(
            "WAREHOUSE_PASSWORD",
            meaning="the compose warehouse's password (also in its `AIRFLOW_CONN_WAREHOUSE`)",
            default="none (required)",
        ),
        Setting(
            "AIRFLOW_DB_PASSWORD",
            meaning="the Airflow metadata database's password",
            default="none (required)",
        ),
        Setting(
            "REDIS_PASSWORD",
            meaning="Redis's password (Celery broker db 0, online store db 1)",
            default="none (required)",
        ),
        Setting(
            "AIRFLOW_USERS",
            meaning="the UI users as `user:role` pairs (simple auth manager; passwords generated)",
            default="none (required)",
        ),
        Setting(
            "RECSYS_LANDING_HOST_DIR",
            meaning=(
                "the host folder mounted read-only at `/opt/landing` (the containers' `RECSYS_LANDING_DIR` and "
                "`RECSYS_LANDING_ROOT`)"
            ),
            default="none (required)",
        ),
        Setting(
            "RECSYS_ALERT_WEBHOOK_URL",
            meaning="as above",
            default="unset",
        ),
    ),
    "tests": (
        Setting(
            "RECSYS_TEST_SERVER_URL",
            meaning=(
                "a PostgreSQL server the tests create their databases in (e.g. "
                "`postgresql://postgres@127.0.0.1:5432/postgres`)"
            ),
            default="the embedded server",
        ),
        Setting(
            "RECSYS_COLD_START_USERS",
            meaning=(
                "users of the simulated shop in `tests/integration/test_cold_start_db.py` (a larger shop for the "
                "[benchmark](../benchmarks.md#new-user-cold-start))"
            ),
            default="`60000`",
        ),
    ),
}
#: variables the code reads only to extend them for the processes it starts (named in the page's prose)
EXTENDED = ("PYTHONPATH",)
#: prefixes of variables that are not settings of the platform
IGNORED_PREFIXES = ("RECSYS_TEST_",)


def _platform_settings() -> dict[str, str]:
    """The ``RECSYS_*`` names of :data:`SETTINGS` (not the ignored ones), each with its first meaning."""
    names: dict[str, str] = {}
    for section in SETTINGS.values():
        for setting in section:
            if setting.name.startswith("RECSYS_") and not setting.name.startswith(IGNORED_PREFIXES):
                names.setdefault(setting.name, setting.meaning)
    return names


#: the ``RECSYS_*`` settings :func:`check_environment` accepts, each with what it sets
ENVIRONMENT: dict[str, str] = _platform_settings()


def check_environment(environ: Mapping[str, str] = os.environ) -> None:
    """Raise on a ``RECSYS_*`` variable that is not one of :data:`ENVIRONMENT`.

    Raises
    ------
    ValueError
        Naming the unknown variables, the closest valid names and where the valid names are listed.
    """
    unknown = sorted(
        name
        for name in environ
        if name.startswith("RECSYS_") and name not in ENVIRONMENT and not name.startswith(IGNORED_PREFIXES)
    )
    if unknown:
        hints = [
            f"{name} (did you mean {', '.join(close)}?)"
            if (close := difflib.get_close_matches(name, ENVIRONMENT, n=1, cutoff=0.8))
            else name
            for name in unknown
        ]
        raise ValueError(
            f"unknown environment variable(s): {'; '.join(hints)}. The valid RECSYS_ settings are "
            f"{', '.join(sorted(ENVIRONMENT))} (docs/reference/settings.md)"
        )
