"""docker-compose.yml: no Docker engine here, so check what `docker compose config` would reject.

Checked against the Compose specification: known service keys only, every
depends_on target exists with a valid condition, environment values are
scalars, named volumes are declared, and the paths the services use exist.
"""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SERVICE_KEYS = {"build", "image", "environment", "volumes", "depends_on", "command", "ports", "healthcheck", "restart"}
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
    for path in ("dags", "plugins", "dbt_project", "requirements.txt"):
        assert (REPO / path).exists()
