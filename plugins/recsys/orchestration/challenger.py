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

import numpy as np

from recsys.db import frames, runs
from recsys.orchestration import schedule
from recsys.serving import placements

logger = logging.getLogger(__name__)

#: the tables ``generate_recommendations`` writes for the shadow run
SHADOW_TABLES = (
    "ml.recommendations",
    "ml.carried_lists",
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

    An incremental run (:mod:`recsys.orchestration.schedule`) scores the challenger's lists of the touched users
    only and copies the previous run's challenger lists of the others, as the champion's lists are carried;
    when the previous run has no list of this challenger (the test just began) it scores every user.
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
        rescore = _rescore(connection, run_id, model_name)
        publishing.generate_recommendations(
            connection,
            shadow,
            data_interval_end,
            model_name=model_name,
            config=config,
            shelves=(placements.FOR_YOU,),
            rescore=rescore,
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
            copied = 0 if rescore is None else _copy_untouched(cursor, run_id, model_name, rescore)
        runs.delete_run(connection, SHADOW_TABLES, shadow)
        connection.commit()
    logger.info("run %s: %d challenger rows of %s scored, %d copied", run_id, written, model_name, copied)
    return {"run_id": run_id, "challenger": model_name, "challenger_recommendations": written + copied}


def _rescore(conn: Any, run_id: str, model_name: str) -> schedule.Rescore | None:
    """The users whose challenger list an incremental run scores again; ``None`` to score everyone.

    The champion's touched users (:func:`recsys.orchestration.schedule.rescore_for`), and the users whose
    previous challenger list holds an item now out of stock or gone. ``None`` for a full run, or when the
    previous run has no list of this challenger.
    """
    rescore = schedule.rescore_for(conn, run_id)
    if rescore is None:
        return None
    with conn.cursor() as cursor:
        cursor.execute(
            "select exists (select from ml.challenger_recommendations where run_id = %s and model_name = %s)",
            (rescore.previous_run_id, model_name),
        )
        if not cursor.fetchone()[0]:
            return None
        cursor.execute(
            "select distinct previous.user_id from ml.challenger_recommendations as previous"
            " left join analytics.dim_items as items on previous.item_id = items.item_id"
            " where previous.run_id = %s and previous.model_name = %s and not coalesce(items.is_in_stock, false)",
            (rescore.previous_run_id, model_name),
        )
        out_of_stock = np.array([row[0] for row in cursor.fetchall()], dtype=object)
    carried = rescore.carried[~rescore.carried["user_id"].isin(out_of_stock)]
    return schedule.Rescore(rescore.previous_run_id, np.union1d(rescore.user_ids, out_of_stock), carried)


def _copy_untouched(cursor: Any, run_id: str, model_name: str, rescore: schedule.Rescore) -> int:
    """Copy the previous run's challenger lists of the users ``rescore`` left untouched (still in dim_users)."""
    cursor.execute(
        "insert into ml.challenger_recommendations (run_id, model_name, user_id, item_rank, item_id, score,"
        " reason_code, reason_text)"
        " select %(run)s, previous.model_name, previous.user_id, previous.item_rank, previous.item_id, previous.score,"
        " previous.reason_code, previous.reason_text"
        " from ml.challenger_recommendations as previous"
        " inner join analytics.dim_users as users on previous.user_id = users.user_id"
        # a hash anti-join on the rescored users, not a scan of the array per row
        " left join unnest(cast(%(rescored)s as text[])) as rescored (user_id) on previous.user_id = rescored.user_id"
        " where previous.run_id = %(previous)s and previous.model_name = %(model)s and rescored.user_id is null",
        {"run": run_id, "model": model_name, "previous": rescore.previous_run_id, "rescored": list(rescore.user_ids)},
    )
    return cursor.rowcount
