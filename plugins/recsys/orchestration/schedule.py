"""The refit schedule: which DAG runs are full and which incremental, and what an incremental run carries over.

A **full run** (every day by default, or the weekdays of ``RECSYS_FULL_RUN_DAYS``) searches every model's
hyperparameters on the validation window, evaluates them on the test window, chooses the champion, refits it on
all data and scores every user's list. An **incremental run** (any other day, when an earlier full run exists):

- ``train_and_evaluate`` carries the champion and its parameters of the last full run into the run's
  ``ml.runs`` row (:func:`carry_champion`) instead of searching: no model is fitted for evaluation;
- ``evaluate_search`` is skipped, and ``target_promotions`` writes the targets without the held-out evaluation
  (evaluations only; the last full run's stand);
- ``recommend`` refits that champion with those parameters on all data up to the interval's end (new items
  and events reach the model every day; a ranker keeps the full run's trained learner and refits only its
  candidate models and features, :meth:`recsys.models.ranker.CandidateRanker.refit_candidates`; an ALS starts from
  the full run's item factors, :meth:`recsys.models.factorization.ALSRecommender.fit`) and scores
  only the users it touched (:func:`lists_to_rescore`); every other user keeps the previous run's list: the run
  points at the run that generated it (``ml.carried_lists``, :func:`carry_lists`) instead of copying its rows.
  ``ml.run_recommendations`` reads every list of a run, generated or carried.

Why this schedule: one day adds about 1/90 of a 90-day history, so the chosen hyperparameters and the champion
(compared over weeks of purchases) rarely change from one day to the next, while the search and the
evaluation are most of a full run's cost; the refit is what keeps lists fresh, and a user who did nothing has
the same evidence as yesterday. A weekly full run (``RECSYS_FULL_RUN_DAYS=sun``) re-chooses the champion and
re-scores everyone; docs/operate/daily-runs.md has the measured cost of both kinds of run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from psycopg2 import sql

from recsys.db import frames, runs

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: the ``ml.runs.champion_reason`` prefix of a run whose champion was carried from a full run
CARRIED = "carried over from the full run "


@dataclass(frozen=True)
class Rescore:
    """What an incremental ``recommend`` does: score ``user_ids`` again, carry the rest of ``previous_run_id``'s lists.

    ``carried`` holds one row per user whose list the run carries: ``user_id`` and ``list_run_id``, the run whose
    ``ml.recommendations`` rows hold the list (the previous run, or the run it carried them from).
    """

    previous_run_id: str
    user_ids: np.ndarray
    carried: pd.DataFrame


def full_run_weekdays(value: str | None = None) -> frozenset[int]:
    """The weekdays (Monday 0) of full runs: ``RECSYS_FULL_RUN_DAYS`` (``all``, or names like ``sun`` or ``wed,sun``).

    Raises
    ------
    ValueError
        A name that is not one of :data:`WEEKDAYS` (a misspelt day would make every run incremental).
    """
    value = os.environ.get("RECSYS_FULL_RUN_DAYS", "all") if value is None else value
    names = [name.strip().lower() for name in value.split(",") if name.strip()]
    if not names or names == ["all"]:
        return frozenset(range(7))
    unknown = [name for name in names if name not in WEEKDAYS]
    if unknown:
        raise ValueError(f"RECSYS_FULL_RUN_DAYS: {unknown} are not weekdays; use {', '.join(WEEKDAYS)} or all")
    return frozenset(WEEKDAYS.index(name) for name in names)


def _first(conn: Any, query: str, params: dict[str, Any]) -> dict[str, Any] | None:
    """The first row of ``query`` as a dict of its columns, or ``None``."""
    with conn.cursor() as cursor:
        cursor.execute(query, params)
        row = cursor.fetchone()
        return None if row is None else dict(zip([column.name for column in cursor.description], row, strict=True))


def last_full_run(conn: Any, before: datetime) -> dict[str, Any] | None:
    """The newest run before ``before`` that chose its champion itself and wrote its lists, or ``None``."""
    if not frames.table_exists(conn, "ml.runs"):
        return None
    return _first(
        conn,
        "select run_id, champion_model, champion_params, placement_champions from ml.runs where status = 'recommended'"
        " and data_cutoff_at < %(before)s and coalesce(champion_reason, '') not like %(carried)s"
        " order by data_cutoff_at desc limit 1",
        {"before": before, "carried": CARRIED + "%"},
    )


def previous_run(conn: Any, before: datetime) -> dict[str, Any] | None:
    """The newest run before ``before`` that wrote its lists (full or incremental): its id and start, or ``None``."""
    if not frames.table_exists(conn, "ml.runs"):
        return None
    return _first(
        conn,
        "select run_id, started_at from ml.runs where status = 'recommended' and data_cutoff_at < %(before)s"
        " order by data_cutoff_at desc limit 1",
        {"before": before},
    )


def is_incremental(conn: Any, data_interval_start: datetime, data_interval_end: datetime) -> bool:
    """Whether the interval's run is incremental: not a full-run weekday, and a full run exists to carry from."""
    if data_interval_start.weekday() in full_run_weekdays():
        return False
    return last_full_run(conn, data_interval_end) is not None


def carry_champion(conn: Any, run_id: str, data_interval_start: datetime, data_interval_end: datetime) -> dict:
    """Write the run's ``ml.runs`` row with the champion and parameters of the last full run (status ``evaluated``).

    One :func:`recsys.db.runs.run_step` transaction; the run has no ``ml.model_evaluations`` or ``ml.model_search``
    rows of its own (the full run's stand for it).
    """
    full = last_full_run(conn, data_interval_end)
    if full is None:
        raise LookupError(f"no full run before {data_interval_end.isoformat()} to carry a champion from")
    with runs.run_step(conn, run_id) as started_at:
        runs.upsert_run(
            conn,
            run_id,
            data_interval_start=data_interval_start,
            data_interval_end=data_interval_end,
            data_cutoff_at=data_interval_end,
            started_at=started_at,
            status="evaluated",
            champion_model=full["champion_model"],
            champion_params=full["champion_params"],
            champion_reason=CARRIED + full["run_id"],
            placement_champions=full["placement_champions"],  # every placement's, as chosen by the full run
        )
    params = None if full["champion_params"] is None else json.loads(full["champion_params"])
    return {
        "run_id": run_id,
        "champion_model": full["champion_model"],
        "champion_params": params,
        "carried_from": full["run_id"],
    }


def _carried_run(conn: Any, run_id: str) -> dict[str, Any] | None:
    """The run's ``ml.runs`` row when its champion was carried over (an incremental run); else ``None``."""
    if not frames.table_exists(conn, "ml.runs"):
        return None
    run = _first(conn, "select champion_reason, data_cutoff_at from ml.runs where run_id = %(run)s", {"run": run_id})
    return run if run is not None and (run["champion_reason"] or "").startswith(CARRIED) else None


def carried_from(conn: Any, run_id: str) -> str | None:
    """The full run whose champion the run carried over, or ``None`` (a full run, or no ``ml.runs`` row)."""
    run = _carried_run(conn, run_id)
    return None if run is None else run["champion_reason"].removeprefix(CARRIED)


def rescore_for(conn: Any, run_id: str) -> Rescore | None:
    """The users the run scores again and the lists it carries, when its champion was carried over (an
    incremental run); else ``None``."""
    run = _carried_run(conn, run_id)
    if run is None:
        return None
    previous = previous_run(conn, run["data_cutoff_at"])
    if previous is None:
        return None
    return lists_to_rescore(conn, previous)


#: per user of ``analytics.dim_users``, the run whose list an incremental run carries, or NULL for a user it scores
#: again (the module docstring). The previous run's lists (millions of rows) are read once: per user, the run that
#: generated the list, whether it holds an unavailable item and whether it is personalized
LISTS_TO_RESCORE_SQL = """
with previous as (
    select
        lists.user_id,
        min(lists.list_run_id) as list_run_id,
        bool_or(not coalesce(items.is_in_stock, false)) as has_unavailable_item,
        bool_or(lists.model_name <> 'popularity') as is_personalized
    from (
        select run_id as list_run_id, user_id, item_id, model_name from ml.recommendations where run_id = {previous}
        union all
        select carried.list_run_id, lists.user_id, lists.item_id, lists.model_name
        from ml.carried_lists as carried
        inner join ml.recommendations as lists
            on carried.list_run_id = lists.run_id and carried.user_id = lists.user_id
        where carried.run_id = {previous}
    ) as lists
    left join analytics.dim_items as items
        on lists.item_id = items.item_id
    group by lists.user_id
),
active as (
    select user_id from analytics.fct_interactions where refreshed_at > {since}
    union
    select user_id from analytics.fct_orders where refreshed_at > {since}
)
select
    users.user_id,
    case
        when
            previous.user_id is null
            or previous.has_unavailable_item
            or (not users.is_personalization_allowed and previous.is_personalized)
            or active.user_id is not null
            then null
        else previous.list_run_id
    end as list_run_id
from analytics.dim_users as users
left join previous
    on users.user_id = previous.user_id
left join active
    on users.user_id = active.user_id
"""


def lists_to_rescore(conn: Any, previous: dict[str, Any]) -> Rescore:
    """The users of ``analytics.dim_users`` whose list an incremental run scores again, and the others' lists.

    A user is scored again when dbt inserted or moved a row of theirs in ``fct_interactions`` or ``fct_orders``
    after the previous run started (its dbt had finished by then: ``refreshed_at``), when the previous run has no
    list for them (a new user), when their previous list holds an item now out of stock or gone from the
    catalogue, or when they withdrew their consent and their previous list was personalized. Everyone else has
    the evidence, the stock and the consent of yesterday's list, which they keep. Users no longer in
    ``dim_users`` (erased, merged) are neither.
    """
    query = sql.SQL(LISTS_TO_RESCORE_SQL).format(
        previous=sql.Literal(previous["run_id"]), since=sql.Literal(previous["started_at"])
    )
    users = frames.read_frame(conn, query)
    rescored = users["list_run_id"].isna().to_numpy()
    return Rescore(
        previous["run_id"],
        np.sort(users["user_id"].to_numpy(dtype=object)[rescored]),
        users.loc[~rescored, ["user_id", "list_run_id"]].reset_index(drop=True),
    )


def carry_lists(conn: Any, run_id: str, carried: pd.DataFrame) -> int:
    """Carry the lists of ``carried`` (``user_id``, ``list_run_id``) into ``run_id``; return the users carried.

    The lists are not copied: ``ml.carried_lists`` gets, per user, the run whose ``ml.recommendations`` rows hold
    them, and ``ml.run_recommendations`` reads them as the run's. The rows keep their ``generated_at``: the list
    was generated then, from the evidence the user still has.
    """
    return frames.copy_frame(conn, "ml.carried_lists", carried[["user_id", "list_run_id"]].assign(run_id=run_id))


def targets(user_ids: pd.Series, rescore: Rescore | None) -> np.ndarray:
    """Positions in ``user_ids`` (``analytics.dim_users``) of the lists to score: all, or the touched users'."""
    if rescore is None:
        return np.arange(len(user_ids), dtype=np.int64)
    return np.flatnonzero(user_ids.isin(rescore.user_ids).to_numpy())


def carry_untouched(conn: Any, run_id: str, rescore: Rescore | None) -> int:
    """:func:`carry_lists` for an incremental run (0 rows for a full one)."""
    return 0 if rescore is None else carry_lists(conn, run_id, rescore.carried)
