"""An A/B test's challenger: its lists for a run, written beside the champion's for the API's challenger arm.

The challenger is another model of the same run (``[experiment] challenger`` in ``models.toml``), with the
parameters the run chose for it on the validation window (``ml.model_search``). Its lists are made by the
one definition of a served list, :func:`recsys.orchestration.publishing.generate_recommendations` (refit on
all data, business rules, re-rank, fill, reasons), run under a shadow run id; the rows then move to
``ml.challenger_recommendations`` of the run and the shadow rows are deleted, in one transaction. They are
``for_you`` lists: the A/B test runs on that placement. The challenger's lists are published this way rather
than re-ranked at request time because the API holds no model: a re-rank of the champion's 20 items could
only reorder them, not show what the challenger finds.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from recsys.db import frames, runs
from recsys.orchestration import schedule
from recsys.serving import placements

logger = logging.getLogger(__name__)

#: the tables ``generate_recommendations`` writes for the shadow run
SHADOW_TABLES = (
    "ml.recommendations",
    "ml.similar_items",
    "ml.cold_start_recommendations",
    "ml.fitted_learners",
    "ml.runs",
)


def shadow_run_id(run_id: str, model_name: str) -> str:
    """The run id the challenger's lists are generated under before they move to their run."""
    return f"{run_id}~challenger~{model_name}"


def selected_params(conn: Any, run_id: str, model_name: str) -> dict[str, Any] | None:
    """The parameters the run chose for ``model_name`` on the validation window, or ``None``.

    An incremental run searched nothing: its parameters are those of the full run it carried its champion from.
    """
    searched = schedule.carried_from(conn, run_id) or run_id
    with conn.cursor() as cursor:
        cursor.execute("select to_regclass('ml.model_search') is not null")
        if not cursor.fetchone()[0]:
            return None
        cursor.execute(
            "select params from ml.model_search where run_id = %s and model_name = %s and is_selected limit 1",
            (searched, model_name),
        )
        row = cursor.fetchone()
    return None if row is None or row[0] is None else json.loads(row[0])


def recommend_challenger(conn: Any, run_id: str, data_interval_end: Any, model_name: str, **options: Any) -> dict:
    """Write ``model_name``'s lists of ``run_id`` to ``ml.challenger_recommendations``; return the row count.

    ``options`` go to :func:`recsys.orchestration.publishing.generate_recommendations` (``n``, ``config``, ...).
    """
    from recsys.models import registry
    from recsys.orchestration import publishing

    with frames.connection(conn) as connection:
        runs.ensure_schema(connection)
        config = options.pop("config", None) or registry.load_model_config()
        params = selected_params(connection, run_id, model_name)
        if params is not None:
            models = {**config["models"], model_name: {**config["models"].get(model_name, {}), "params": params}}
            config = {**config, "models": models}
        shadow = shadow_run_id(run_id, model_name)
        publishing.generate_recommendations(
            connection,
            shadow,
            data_interval_end,
            model_name=model_name,
            config=config,
            shelves=(placements.FOR_YOU,),
            **options,
        )
        with connection.cursor() as cursor:
            cursor.execute(
                "delete from ml.challenger_recommendations where run_id = %s and model_name = %s", (run_id, model_name)
            )
            cursor.execute(
                "insert into ml.challenger_recommendations (run_id, model_name, user_id, item_rank, item_id, score,"
                " reason_code, reason_text) select %s, %s, user_id, item_rank, item_id, score, reason_code, reason_text"
                " from ml.recommendations where run_id = %s and placement = %s",
                (run_id, model_name, shadow, placements.FOR_YOU),
            )
            written = cursor.rowcount
        runs.delete_run(connection, SHADOW_TABLES, shadow)
        connection.commit()
    logger.info("run %s: %d challenger rows of %s", run_id, written, model_name)
    return {"run_id": run_id, "challenger": model_name, "challenger_recommendations": written}
