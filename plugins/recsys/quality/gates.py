"""Data-quality gates: Great Expectations suites on the loaded batch, the marts and the candidate recs run.

Two gates run as DAG tasks:

``raw``
    after ``load``, before dbt: the rows of the batch just loaded
    (``_batch_id`` = the batch id) of every ``raw`` table the batch delivered,
    the table schemas, the batch's reject share in ``quality.load_audit``, and
    ``dbt source freshness`` of the required sources.
``marts_and_recs``
    after ``recommend``, before the dbt ``publish`` group: profiles in
    ``analytics.user_profiles`` (their keys and the interest weights are the
    marts layer's constraints and dbt tests), and the rows of
    the run about to be published in ``ml.recommendations``,
    ``ml.similar_items``, ``ml.cold_start_recommendations`` and ``ml.promotion_targets``, so a bad run
    never reaches ``recs`` and the previously published run stays served.

Every expectation is ``critical`` (a failure stops the DAG run) or
``warning`` (recorded only), set with Great Expectations' own ``severity``
field where the suite is declared (:mod:`recsys.quality.suites`). Every result lands in
``quality.check_results``, one row per expectation; re-running a gate for a
run replaces that gate's rows. The data docs of each gate are built into
``RECSYS_GX_DOCS_DIR/<run_id>/<gate>/index.html`` (default
``.local/gx_docs``) with counts only: no example values, which could be personal
data (``partial_unexpected_count`` 0). Only the docs of the newest
``RECSYS_GX_DOCS_KEEP_RUNS`` runs (default 14) are kept.

``great_expectations`` and dbt are imported inside the functions: importing
this module is cheap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from psycopg2.extras import Json, execute_values

from recsys.db.warehouse import LOCAL_DIR, REPO_ROOT, dbt_env
from recsys.ingest import landing
from recsys.quality.suites import Suite, identity_suites, marts_and_recs_suites, raw_suites

log = logging.getLogger(__name__)

DBT_PROJECT = REPO_ROOT / "dbt_project"
DOCS_KEEP_RUNS = 14

RESULTS_DDL = """
create schema if not exists quality;
create table if not exists quality.check_results (
    run_id text not null,
    batch_id text,
    gate text not null,
    suite text not null,
    table_name text not null,
    expectation_type text not null,
    column_name text,
    severity text not null,
    success boolean not null,
    observed_value text,
    unexpected_count bigint,
    element_count bigint,
    details jsonb,
    checked_at timestamptz not null default now()
);
create index if not exists check_results_run on quality.check_results (run_id, gate);
"""


class QualityGateError(RuntimeError):
    """A critical expectation failed: the DAG run stops before the next layer is built."""


def docs_dir() -> Path:
    """Where data docs go: ``RECSYS_GX_DOCS_DIR``, default ``.local/gx_docs``."""
    return Path(os.environ.get("RECSYS_GX_DOCS_DIR") or LOCAL_DIR / "gx_docs")


def prune_docs(root: Path, keep: int | None = None) -> list[str]:
    """Delete the data docs of all but the ``keep`` newest runs under ``root``; return the runs deleted.

    ``keep`` defaults to ``RECSYS_GX_DOCS_KEEP_RUNS`` (14). Runs are ordered by when their docs were written.
    """
    keep = int(os.environ.get("RECSYS_GX_DOCS_KEEP_RUNS", DOCS_KEEP_RUNS)) if keep is None else keep
    runs = sorted((path for path in root.iterdir() if path.is_dir()), key=lambda path: path.stat().st_mtime)
    stale = runs[: max(len(runs) - keep, 0)]
    for path in stale:
        shutil.rmtree(path)
    return [path.name for path in stale]


def _sqlalchemy_url(dsn: str) -> str:
    """A SQLAlchemy URL for a ``postgres://`` or ``postgresql://`` DSN (Airflow writes ``postgres://``)."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql+psycopg2://", dsn)


def validate(dsn: str, suites: list[Suite], docs: Path) -> list[dict]:
    """Validate ``suites`` with an ephemeral Great Expectations context and build data docs into ``docs``.

    Returns
    -------
    list of dict
        One row per expectation: suite, table_name, expectation_type, column_name, severity, success,
        observed_value (JSON text), unexpected_count, element_count, details.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.add_data_docs_site(
        "recsys",
        {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    source = context.data_sources.add_postgres("warehouse", connection_string=_sqlalchemy_url(dsn))
    with _batch_views(dsn, suites) as relations:
        definitions = []
        for suite in suites:
            schema, table = relations[suite.name].split(".")
            with warnings.catch_warnings():  # schema_name is deprecated, but one data source serves every schema
                warnings.simplefilter("ignore", DeprecationWarning)
                asset = source.add_table_asset(suite.name, table_name=table, schema_name=schema)
            expectations = context.suites.add(gx.ExpectationSuite(suite.name, expectations=suite.expectations))
            definitions.append(
                context.validation_definitions.add(
                    gx.ValidationDefinition(
                        name=suite.name, data=asset.add_batch_definition_whole_table("batch"), suite=expectations
                    )
                )
            )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name="gate",
                validation_definitions=definitions,
                # counts, never example values: they would put personal data into the HTML docs
                result_format={"result_format": "SUMMARY", "partial_unexpected_count": 0},
            )
        )
        outcome = checkpoint.run()
    context.build_data_docs()
    tables = {suite.name: suite.table for suite in suites}
    rows = [
        _result_row(validation.suite_name, tables[validation.suite_name], result)
        for validation in outcome.run_results.values()
        for result in validation.results
    ]
    return _graded(rows)


@contextmanager
def _batch_views(dsn: str, suites: list[Suite]):
    """The relation each suite validates: its table, or a view ``quality.gate_<key>_<suite>`` of its query.

    Great Expectations reads a query batch's columns by running the whole query and fetching every row (its
    ``column_reflection_fallback``): all 50 million events of a big batch, in memory. A view's columns come
    from the catalog. The views are dropped when the gate is done.
    """
    import psycopg2

    key = os.urandom(4).hex()
    views = {suite.name: f"quality.gate_{key}_{suite.name}" for suite in suites if suite.query is not None}
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("create schema if not exists quality")
            for suite in suites:
                if suite.query is not None:
                    cur.execute(f"create view {views[suite.name]} as {suite.query}")
        yield {suite.name: views.get(suite.name, suite.table) for suite in suites}
    finally:
        with conn.cursor() as cur:
            for view in views.values():
                cur.execute(f"drop view if exists {view}")
        conn.close()


def _graded(rows: list[dict]) -> list[dict]:
    """Grade the :func:`unique_rows` checks by the share of the batch's rows they found duplicated.

    The batch's row count is the ``element_count`` of the suite's column checks, or the observed value of
    its row count check. A failed check is ``critical`` above its ``critical_share``, else ``warning``; its
    observed value is the share.
    """
    batch_rows: dict[str, int] = {}
    for row in rows:  # one per expectation: a few hundred at most
        counted = row["observed_value"] if row["expectation_type"].startswith("expect_table_row_count") else None
        count = row["element_count"] or (json.loads(counted) if counted else 0)
        batch_rows[row["suite"]] = max(batch_rows.get(row["suite"], 0), count)
    for row in rows:
        critical_share = row.pop("critical_share")
        if critical_share is None:
            continue
        row["element_count"] = batch_rows[row["suite"]] or None
        share = row["unexpected_count"] / row["element_count"] if row["element_count"] else 0.0
        row["observed_value"] = json.dumps(round(share, 6))
        if not row["success"]:
            row["severity"] = "critical" if share > critical_share else "warning"
    return rows


def _result_row(suite: str, table: str, result) -> dict:
    config = result.expectation_config
    details = result.result or {}
    if result.exception_info and result.exception_info.get("raised_exception"):
        details = {**details, "exception": result.exception_info.get("exception_message")}
    column = config.kwargs.get("column") or ",".join(config.kwargs.get("column_list") or []) or None
    # counts only: example values could be user ids or other personal data, which quality.* must not keep
    details = {
        key: value for key, value in details.items() if not key.startswith(("partial_unexpected", "unexpected_"))
    }
    details.update(
        {key: result.result[key] for key in ("unexpected_count", "unexpected_percent") if key in (result.result or {})}
    )
    observed = details.get("observed_value")
    if (config.meta or {}).get("columns"):  # unique_rows: the key, and the duplicated rows it found
        column = ",".join(config.meta["columns"])
        details["unexpected_count"] = int(observed or 0)
    return {
        "suite": suite,
        "table_name": table,
        "expectation_type": config.type + (f": {config.description}" if config.description else ""),
        "column_name": column,
        "severity": config.severity.value,
        "critical_share": (config.meta or {}).get("critical_share"),
        "success": bool(result.success),
        "observed_value": None if observed is None else json.dumps(observed, default=str),
        "unexpected_count": details.get("unexpected_count"),
        "element_count": details.get("element_count"),
        "details": json.loads(json.dumps(details, default=str)),
    }


@contextmanager
def _environ(values: dict[str, str]):
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def source_freshness(dsn: str, settings: dict[str, str]) -> list[dict]:
    """Run ``dbt source freshness`` on the ``shop`` sources (dbt's programmatic runner); one row per level.

    Each source with a freshness config gives a ``warning`` row (passes unless past ``warn_after``) and a
    ``critical`` row (passes unless past ``error_after``). Freshness is dbt's: the newest ``_loaded_at``
    against the wall clock, i.e. "did the loader deliver recently", not the data interval (the timestamp
    window of the raw suites covers that).

    Raises
    ------
    RuntimeError
        dbt could not run the check at all (e.g. the project does not parse or the warehouse is unreachable).
    """
    from dbt.cli.main import dbtRunner

    # one target folder per warehouse database, and the run's settings as environment variables, not --vars
    # (macros/as_of.sql): the next gate on this warehouse reuses dbt's partial parse (2 s, not a 5-8 s full parse)
    target = str(Path(tempfile.gettempdir()) / "recsys-dbt-freshness" / hashlib.sha256(dsn.encode()).hexdigest()[:16])
    with _environ(dbt_env(dsn) | settings):
        args = ["source", "freshness", "--select", "source:shop", "--project-dir", str(DBT_PROJECT)]
        args += ["--profiles-dir", str(DBT_PROJECT), "--target-path", target, "--log-path", target]
        outcome = dbtRunner().invoke(args)
    if outcome.result is None:
        raise RuntimeError(f"dbt source freshness did not run: {outcome.exception}")
    rows = []
    for result in outcome.result.results:
        if str(result.node.resource_type) != "source":  # the project's on-run-start hooks report here too
            continue
        status = str(getattr(result.status, "value", result.status))
        freshness = result.node.freshness
        observed = {
            "status": status,
            "max_loaded_at": str(getattr(result, "max_loaded_at", None)),
            "age_hours": round(getattr(result, "age", 0.0) / 3600, 3),
            "warn_after": freshness.warn_after.to_dict() if freshness else None,
            "error_after": freshness.error_after.to_dict() if freshness else None,
            "message": getattr(result, "message", None),
        }
        for severity, ok in (("warning", status == "pass"), ("critical", status in ("pass", "warn"))):
            rows.append(
                {
                    "suite": "dbt_source_freshness",
                    "table_name": f"{result.node.schema}.{result.node.identifier}",
                    "expectation_type": "dbt_source_freshness",
                    "column_name": result.node.loaded_at_field,
                    "severity": severity,
                    "success": ok,
                    "observed_value": json.dumps(observed),
                    "unexpected_count": None,
                    "element_count": None,
                    "details": observed,
                }
            )
    return rows


def record(conn, run_id: str, gate: str, rows: list[dict], batch_id: str | None = None) -> None:
    """Replace the rows of ``(run_id, gate)`` in ``quality.check_results`` with ``rows`` (committed)."""
    columns = ["suite", "table_name", "expectation_type", "column_name", "severity", "success"]
    columns += ["observed_value", "unexpected_count", "element_count", "details"]
    with conn.cursor() as cur:
        cur.execute(RESULTS_DDL)
        cur.execute("delete from quality.check_results where run_id = %s and gate = %s", (run_id, gate))
        execute_values(
            cur,
            f"insert into quality.check_results (run_id, batch_id, gate, {', '.join(columns)}) values %s",
            [(run_id, batch_id, gate, *[row[name] for name in columns[:-1]], Json(row["details"])) for row in rows],
        )
    conn.commit()


def enforce(gate: str, run_id: str, rows: list[dict]) -> dict:
    """Raise :class:`QualityGateError` naming every failed critical expectation; log failed warnings.

    Returns
    -------
    dict
        Counts for XCom: expectations, failed_critical (0), failed_warnings.
    """
    failed = [row for row in rows if not row["success"]]
    warnings = [row for row in failed if row["severity"] != "critical"]
    critical = [row for row in failed if row["severity"] == "critical"]
    for row in warnings:
        log.warning("quality gate %s, run %s: warning: %s", gate, run_id, _describe(row))
    if critical:
        lines = "\n".join(f"  - {_describe(row)}" for row in critical)
        raise QualityGateError(
            f"quality gate {gate!r} failed for run {run_id}: {len(critical)} critical expectation(s) failed"
            f" (all results in quality.check_results):\n{lines}"
        )
    log.info("quality gate %s, run %s: %d expectations, %d warnings", gate, run_id, len(rows), len(warnings))
    return {"expectations": len(rows), "failed_critical": 0, "failed_warnings": len(warnings)}


def _describe(row: dict) -> str:
    column = f"({row['column_name']})" if row["column_name"] else ""
    found = f"unexpected {row['unexpected_count']} of {row['element_count']}" if row["element_count"] else ""
    found = found or f"observed {row['observed_value']}"
    if row["details"].get("exception"):
        found += f"; error: {row['details']['exception']}"
    return f"{row['table_name']} [{row['suite']}]: {row['expectation_type']}{column}: {found}"


def batch_tables(conn, batch_id: str) -> list[str]:
    """The ``raw`` tables the batch delivered (its ``quality.load_audit`` rows), in landing order."""
    with conn.cursor() as cur:
        cur.execute("select table_name from quality.load_audit where batch_id = %s", (batch_id,))
        delivered = {row[0] for row in cur.fetchall()}
    return [name for name in landing.FILES if name in delivered]


def check_raw(conn, dsn: str, run_id: str, batch_id: str, data_interval_end: datetime, freshness: bool = True) -> dict:
    """The ``raw`` gate: validate the batch, run ``dbt source freshness``, record, then enforce.

    Parameters
    ----------
    conn : psycopg2 connection
        Where ``quality.check_results`` is written.
    dsn : str
        The warehouse URL Great Expectations and dbt connect to.
    run_id, batch_id : str
        The DAG run's model run id (``tasks.run_id_for``) and the batch just loaded.
    data_interval_end : datetime
        Timestamps later than this plus ``FUTURE_TOLERANCE`` are out of the window.
    freshness : bool
        Run ``dbt source freshness`` too.

    Returns
    -------
    dict
        Counts and the data docs path (for XCom).

    Raises
    ------
    QualityGateError
        A critical expectation (or the error level of a freshness check) failed; the results are recorded first.
    """
    tables = batch_tables(conn, batch_id)
    if not tables:
        raise QualityGateError(f"batch {batch_id!r} has no rows in quality.load_audit: was it loaded?")
    docs = docs_dir() / run_id / "raw"
    rows = validate(dsn, raw_suites(batch_id, data_interval_end, tables), docs)
    if freshness:
        as_of = data_interval_end.astimezone(UTC).isoformat()
        rows += source_freshness(dsn, {"RECSYS_AS_OF": as_of, "RECSYS_RUN_ID": run_id})
    return _finish(conn, "raw", run_id, rows, docs, batch_id)


def check_marts_and_recs(conn, dsn: str, run_id: str) -> dict:
    """The ``marts_and_recs`` gate on the marts and the candidate run ``run_id`` in ``ml``; see :func:`check_raw`."""
    docs = docs_dir() / run_id / "marts_and_recs"
    rows = validate(dsn, marts_and_recs_suites(run_id) + identity_suites(), docs)
    return _finish(conn, "marts_and_recs", run_id, rows, docs)


def _finish(conn, gate: str, run_id: str, rows: list[dict], docs: Path, batch_id: str | None = None) -> dict:
    record(conn, run_id, gate, rows, batch_id)
    log.info("quality gate %s: data docs at %s", gate, docs / "index.html")
    prune_docs(docs.parent.parent)
    return {**enforce(gate, run_id, rows), "data_docs": str(docs / "index.html")}
