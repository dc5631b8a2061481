"""The quality suites as declared: every expectation has a severity, every landing table a suite, cheap imports."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

from recsys.ingest import landing
from recsys.quality import suites


def test_every_landing_table_has_a_schema_and_a_batch_suite_with_known_severities():
    declared = suites.raw_suites("2026-01-01", datetime(2026, 1, 2, tzinfo=UTC), list(landing.FILES))
    declared += suites.marts_and_recs_suites("run_20260102T000000")
    names = {suite.name for suite in declared}
    assert {f"raw_{name}" for name in landing.FILES} | {f"raw_{name}_schema" for name in landing.FILES} <= names
    severities = {expectation.severity.value for suite in declared for expectation in suite.expectations}
    assert severities == {"critical", "warning"}
    # batch suites read only the batch (or the candidate run), never the whole history
    raw_events = next(suite for suite in declared if suite.name == "raw_events")
    assert raw_events.query.endswith("from raw.events where _batch_id = '2026-01-01'")
    recs = next(suite for suite in declared if suite.name == "ml_recommendations")
    assert recs.query.endswith("from ml.recommendations where run_id = 'run_20260102T000000'")


def test_literals_are_quoted():
    declared = suites.raw_suites("it's", datetime(2026, 1, 2, tzinfo=UTC), ["users"])
    assert declared[1].query.endswith("where _batch_id = 'it''s'")


def test_importing_the_task_module_loads_neither_great_expectations_nor_dbt():
    code = (
        "import sys, recsys.orchestration.tasks, recsys.quality.gates;"
        " print(sorted({'great_expectations', 'dbt'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
