"""The A/B test in the report: click-through and conversion per arm, and whether the difference is significant.

Read from the online rows of ``recs.model_evaluations`` (:mod:`recsys.evaluation.online`), all positions
together (``k`` 0). The challenger is compared with the champion by a two-sided two-proportion z-test with
the pooled proportion (:func:`two_proportion_z_test`), once for click-through (clicks / impressions) and
once for conversion (purchases / impressions). Impressions of one shopper are not independent (the arm is
drawn per shopper), so the p-value is optimistic when shoppers see many lists: read it with the counts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from recsys.reporting.report import fetch_frame

ARMS = ("champion", "challenger")
#: the significance level the report's verdict uses
ALPHA = 0.05


def two_proportion_z_test(successes_a: float, n_a: float, successes_b: float, n_b: float) -> tuple[float, float]:
    """``(z, p)`` of B's proportion against A's: pooled standard error, two-sided p-value (NaN if undefined)."""
    if min(n_a, n_b) <= 0:
        return float("nan"), float("nan")
    pooled = (successes_a + successes_b) / (n_a + n_b)
    error = np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if error == 0:
        return float("nan"), float("nan")
    z = (successes_b / n_b - successes_a / n_a) / error
    return float(z), float(2 * stats.norm.sf(abs(z)))


def arm_comparison(conn: Any, run_id: str | None = None, table: str = "recs.model_evaluations") -> pd.DataFrame:
    """One row per arm of the A/B test of ``run_id`` (default: the latest run with online rows).

    Columns: run_id, arm, model_name, impressions, clicks, purchases, ctr, conversion_rate; the challenger's
    row adds ctr_z, ctr_p, conversion_z, conversion_p against the champion. Empty without an A/B test.
    """
    schema, name = table.split(".")
    rows = fetch_frame(
        conn,
        f'select run_id, model_name, segment, metric, metric_value::float as value from "{schema}"."{name}"'
        " where variant = 'online' and k = 0 and segment = any(%s)"
        f' and run_id = coalesce(%s, (select max(run_id) from "{schema}"."{name}" where variant = \'online\'))',
        ([f"arm={arm}" for arm in ARMS], run_id),
    )
    if rows.empty:
        return pd.DataFrame()
    wide = rows.pivot_table(index=["run_id", "segment", "model_name"], columns="metric", values="value").reset_index()
    wide.insert(1, "arm", wide.pop("segment").str.removeprefix("arm="))
    wide = wide.set_index("arm").reindex([arm for arm in ARMS if arm in set(wide["arm"])]).reset_index()
    if set(ARMS) <= set(wide["arm"]):
        champion, challenger = (wide.set_index("arm").loc[arm] for arm in ARMS)
        for metric, count in (("ctr", "clicks"), ("conversion", "purchases")):
            z, p = two_proportion_z_test(
                champion[count], champion["impressions"], challenger[count], challenger["impressions"]
            )
            wide.loc[wide["arm"] == "challenger", [f"{metric}_z", f"{metric}_p"]] = [z, p]
    return wide


def section(conn: Any, table: Callable[[pd.DataFrame], str]) -> str:
    """The report's A/B section (``table`` renders a frame as the report's HTML table)."""
    wide = arm_comparison(conn)
    if wide.empty:
        return "<p>No A/B test served lists yet (no online rows in recs.model_evaluations).</p>"
    verdict = ""
    if "ctr_p" in wide:
        challenger = wide.set_index("arm").loc["challenger"]
        better = "higher" if challenger["ctr_z"] > 0 else "lower"
        significant = "significant" if challenger["ctr_p"] < ALPHA else "not significant"
        verdict = (
            f"<p>Run {challenger['run_id']}: the challenger's click-through is {better} than the champion's "
            f"(two-proportion z-test, p = {challenger['ctr_p']:.3g}: {significant} at {ALPHA}).</p>"
        )
    return verdict + table(wide)
