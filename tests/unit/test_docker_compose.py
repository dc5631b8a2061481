"""docker-compose.yml: a real Compose implementation parses it, and the deployment's security defaults hold.

`docker-compose config` (Compose v1.29, Debian's `docker-compose` package; `.ci/run` installs it) parses
the file with every secret set, and refuses it when one is missing. Checked besides against the Compose
specification: known service keys only, every depends_on target exists with a valid condition, environment
values are scalars, named volumes are declared, and the paths the services use exist.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SERVICE_KEYS = {"build", "image", "environment", "volumes", "depends_on", "command", "ports", "healthcheck", "restart"}
SECRETS = [
    "RECSYS_PSEUDONYM_KEY",
    "RECSYS_API_TOKEN",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_FERNET_KEY",
    "WAREHOUSE_PASSWORD",
    "AIRFLOW_DB_PASSWORD",
    "REDIS_PASSWORD",
]
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def load() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_services_use_known_keys_and_valid_dependencies():
    compose = load()
    assert set(compose) <= {"services", "volumes"} | {key for key in compose if key.startswith("x-")}
    services = compose["services"]
    for name, service in services.items():
        assert set(service) <= SERVICE_KEYS, (name, set(service) - SERVICE_KEYS)
        assert "image" in service or "build" in service, name
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in services and rule["condition"] in CONDITIONS, (name, target)
        for key, value in (service.get("environment") or {}).items():
            assert isinstance(value, str | int | float | bool), (name, key)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(("$", ".", "/")) or source in compose["volumes"], (name, volume)


def test_airflow_services_run_the_same_dags_with_a_warehouse_connection_and_workers():
    services = load()["services"]
    airflow = {name: service for name, service in services.items() if "build" in service}
    assert {"airflow-scheduler", "airflow-worker", "airflow-apiserver", "airflow-dag-processor"} <= set(airflow)
    for service in airflow.values():
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/recsys/dags"
        warehouse = env["AIRFLOW_CONN_WAREHOUSE"]
        assert warehouse.startswith("postgresql://") and "@warehouse:" in warehouse
        assert env["AIRFLOW__COSMOS__ENABLE_TELEMETRY"] == "False"
        assert "${RECSYS_PSEUDONYM_KEY:?" in env["RECSYS_PSEUDONYM_KEY"]  # a secret from .env, never the repo
    assert {"warehouse", "airflow-db", "redis"} <= set(services)
    for path in ("dags", "plugins", "dbt_project", "requirements.txt", "Dockerfile"):
        assert (REPO / path).exists()


def test_airflow_services_restart_and_report_health_with_dags_and_dbt_mounted():
    services = load()["services"]
    for name, service in services.items():
        if name == "airflow-init":
            assert service["restart"] == "no"
            continue
        assert service["restart"] == "always", name
        assert service["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}, name
        if "build" in service:
            assert service["build"] == {"context": ".", "dockerfile": "Dockerfile"}, name  # no dockerfile_inline
            assert {"./dags:/opt/recsys/dags:ro", "./dbt_project:/opt/recsys/dbt_project"} <= set(service["volumes"])


def test_ports_are_bound_to_localhost_and_secrets_have_no_defaults():
    text = (REPO / "docker-compose.yml").read_text()
    for service in load()["services"].values():
        assert all(port.startswith("127.0.0.1:") for port in service.get("ports", []))
    for name in SECRETS:
        assert f"${{{name}:?" in text, name
        assert not re.search(rf"\${{{name}:?-", text), name  # no ${VAR:-default} / ${VAR-default}
        assert re.search(rf"(?m)^{name}=$", (REPO / ".env.example").read_text()), name  # no placeholder to keep


def test_the_serving_api_runs_without_the_pseudonymization_key():
    """The API checks erasures in the warehouse (its keystore): the key stays out of the API's process."""
    env = load()["services"]["recsys-api"]["environment"]
    assert "RECSYS_PSEUDONYM_KEY" not in env and "${RECSYS_API_TOKEN:?" in env["RECSYS_API_TOKEN"]


def test_celery_broker_and_online_store_use_separate_redis_databases_with_a_password():
    services = load()["services"]
    env = services["airflow-worker"]["environment"]
    broker, store = env["AIRFLOW__CELERY__BROKER_URL"], env["REDIS_URL"]
    assert broker.startswith("redis://:${REDIS_PASSWORD:?") and broker.endswith("@redis:6379/0")
    assert store.startswith("redis://:${REDIS_PASSWORD:?") and store.endswith("@redis:6379/1")
    assert "--requirepass" in " ".join(services["redis"]["command"])
    assert env["AIRFLOW__CORE__FERNET_KEY"].startswith("${AIRFLOW_FERNET_KEY:?")
    assert env["RECSYS_LANDING_ROOT"] == "/opt/landing"


def test_the_image_leaves_out_secrets_local_state_and_test_tools():
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".env", ".local/", ".venv/", "target/", "logs/", "site/", "dbt_project/target/"} <= set(ignored)
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "requirements-dev-only.txt" in dockerfile and "COPY . " not in dockerfile
    pinned = {
        line.split("==")[0].lower() for line in (REPO / "requirements.txt").read_text().splitlines() if "==" in line
    }
    dev_only = set((REPO / "requirements-dev-only.txt").read_text().split())
    assert {"pytest", "ruff", "sqlfluff", "mkdocs"} <= dev_only <= pinned


def _compose_config(tmp_path: Path, leave_out: str | None = None) -> subprocess.CompletedProcess:
    values = {name: "s3cret-" + name.lower() for name in SECRETS} | {
        "AIRFLOW_USERS": "admin:admin",
        "RECSYS_LANDING_HOST_DIR": str(tmp_path),
    }
    env_file = tmp_path / "compose.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in values.items() if key != leave_out))
    return subprocess.run(
        ["docker-compose", "--project-directory", str(REPO), "--env-file", str(env_file), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )


@pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="needs Compose v1 (apt-get install docker-compose; .ci/run does)"
)
def test_a_real_compose_parses_the_file_and_refuses_it_without_a_secret(tmp_path):
    parsed = _compose_config(tmp_path)
    assert parsed.returncode == 0, parsed.stderr
    refused = _compose_config(tmp_path, leave_out="REDIS_PASSWORD")
    assert refused.returncode != 0 and "set REDIS_PASSWORD in .env" in refused.stderr
