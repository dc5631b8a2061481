"""The gates' own Great Expectations expectation: a SQL query's unexpected rows, counted and never fetched.

Great Expectations' ``UnexpectedRowsExpectation`` runs its query twice: once to count the rows, once to
fetch them (up to 200) for the result. The gates record counts only (example values could be personal data,
and ``quality.*`` must not keep them), so the second run is wasted work, and on a batch of millions of rows
(a run's ``ml.recommendations``) it doubles the gate's time. :class:`UnexpectedRowCountExpectation` depends on
the count alone: the query runs once.
"""

from __future__ import annotations

from typing import Any, ClassVar

from great_expectations.expectations import UnexpectedRowsExpectation


class UnexpectedRowCountExpectation(UnexpectedRowsExpectation):
    """``UnexpectedRowsExpectation`` that counts the unexpected rows (the observed value) and fetches none."""

    metric_dependencies: ClassVar[tuple[str, ...]] = ("unexpected_rows_query.row_count",)

    def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine: Any = None) -> dict:
        count = metrics["unexpected_rows_query.row_count"]
        return {"success": count == 0, "result": {"observed_value": count}}
