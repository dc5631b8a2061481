"""Online evaluation: click-through and conversion of the served lists, from ``analytics.fct_impressions``.

For every run that served impressions, by model, A/B arm and position, rows of ``ml.model_evaluations``
with variant :data:`VARIANT` (published into ``recs.model_evaluations`` with the next run):

=================  ==========================================================================================
column             value
=================  ==========================================================================================
``segment``        ``arm=champion``, ``arm=challenger``, or ``arm=none`` (outside an A/B test)
``k``              the position in the list (1 = first), 0 for all positions together
``metric``         ``impressions``, ``clicks``, ``purchases`` (counts), ``ctr`` (clicks / impressions),
                   ``conversion_rate`` (purchases / impressions); clicks and purchases as
                   ``fct_impressions`` attributes them (var ``attribution_window_hours``)
=================  ==========================================================================================

The counts are aggregated in Postgres (one ``group by grouping sets``); Python only reshapes the few
aggregated rows. Evaluating again replaces the runs' online rows in one transaction.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from recsys.db import frames, runs

log = logging.getLogger(__name__)

VARIANT = "online"
#: the counts per group; the rates are derived from them
COUNTS = ("impressions", "clicks", "purchases")

AGGREGATE = """
select
    run_id,
    coalesce(model_name, 'unknown') as model_name,
    'arm=' || coalesce(arm, 'none') as segment,
    coalesce(position, 0) as k,
    count(*) as impressions,
    count(*) filter (where is_clicked) as clicks,
    count(*) filter (where is_purchased) as purchases
from analytics.fct_impressions
where run_id is not null and ({runs}::text[] is null or run_id = any({runs}::text[]))
group by grouping sets ((run_id, model_name, arm), (run_id, model_name, arm, position))
"""


def online_rows(conn: Any, run_ids: list[str] | None = None) -> pd.DataFrame:
    """The online metrics as ``ml.model_evaluations`` rows (``run_ids`` None: every run that served)."""
    with conn.cursor() as cursor:
        cursor.execute(AGGREGATE.format(runs="%(runs)s"), {"runs": run_ids})
        counts = pd.DataFrame(cursor.fetchall(), columns=[column.name for column in cursor.description])
    conn.rollback()
    keys = ["run_id", "model_name", "segment", "k"]
    counts[list(COUNTS)] = counts[list(COUNTS)].astype("float64")
    counts["ctr"] = counts["clicks"] / counts["impressions"]
    counts["conversion_rate"] = counts["purchases"] / counts["impressions"]
    rows = counts.melt(id_vars=keys, var_name="metric", value_name="metric_value")
    return rows.assign(variant=VARIANT)[["run_id", "model_name", "variant", "segment", "metric", "k", "metric_value"]]


def evaluate_online(conn: Any, run_ids: list[str] | None = None) -> dict[str, int]:
    """Write the online rows of ``run_ids`` (None: every run in ``fct_impressions``); return rows per run."""
    with conn.cursor() as cursor:
        cursor.execute("select to_regclass('analytics.fct_impressions') is not null")
        if not cursor.fetchone()[0]:  # dbt has not built the impressions yet
            conn.rollback()
            return {}
    runs.ensure_schema(conn)
    rows = online_rows(conn, run_ids)
    with conn.cursor() as cursor:
        cursor.execute(
            "delete from ml.model_evaluations where variant = %s and run_id = any(%s)",
            (VARIANT, list(run_ids if run_ids is not None else rows["run_id"].unique())),
        )
    frames.copy_frame(conn, "ml.model_evaluations", rows)
    conn.commit()
    written = rows.groupby("run_id").size().astype(int).to_dict()
    log.info("online evaluation rows per run: %s", written)
    return written
