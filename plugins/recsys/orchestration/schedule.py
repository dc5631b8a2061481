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
  only the users it touched (:func:`touched_users`); every other user keeps the previous run's list: the run
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

from recsys.db import frames, runs

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: the ``ml.runs.champion_reason`` prefix of a run whose champion was carried from a full run
CARRIED = "carried over from the full run "


@dataclass(frozen=True)
class Rescore:
    """What an incremental ``recommend`` does: score ``user_ids`` again, copy the rest of ``previous_run_id``."""

    previous_run_id: str
    user_ids: np.ndarray


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
    """The users the run scores again, when its champion was carried over (an incremental run); else ``None``."""
    run = _carried_run(conn, run_id)
    if run is None:
        return None
    previous = previous_run(conn, run["data_cutoff_at"])
    if previous is None:
        return None
    return Rescore(previous["run_id"], touched_users(conn, previous))


#: the users an incremental run scores again (the module docstring), given the previous run and its start. The
#: previous run's lists (millions of rows) are read once: per user, whether a list holds an unavailable item and
#: whether one is personalized
TOUCHED_USERS_SQL = """
with previous as (
    select
        lists.user_id,
        bool_or(not coalesce(items.is_in_stock, false)) as has_unavailable_item,
        bool_or(lists.model_name <> 'popularity') as is_personalized
    from ml.run_recommendations as lists
    left join analytics.dim_items as items
        on lists.item_id = items.item_id
    where lists.run_id = %(previous)s
    group by lists.user_id
)
select user_id from analytics.fct_interactions where refreshed_at > %(since)s
union
select user_id from analytics.fct_orders where refreshed_at > %(since)s
union
select users.user_id
from analytics.dim_users as users
left join previous
    on users.user_id = previous.user_id
where previous.user_id is null or (not users.is_personalization_allowed and previous.is_personalized)
union
select user_id from previous where has_unavailable_item
"""


def touched_users(conn: Any, previous: dict[str, Any]) -> np.ndarray:
    """The ``user_id`` of the users whose list an incremental run scores again, sorted.

    A user is touched when dbt inserted or moved a row of theirs in ``fct_interactions`` or ``fct_orders`` after
    the previous run started (its dbt had finished by then: ``refreshed_at``), when the previous run has no
    list for them (a new user), when their previous list holds an item now out of stock or gone from the
    catalogue, or when they withdrew their consent and their previous list was personalized. Everyone else
    has the evidence, the stock and the consent of yesterday's list, which they keep.
    """
    with conn.cursor() as cursor:
        cursor.execute(TOUCHED_USERS_SQL, {"since": previous["started_at"], "previous": previous["run_id"]})
        return np.sort(np.array([row[0] for row in cursor.fetchall()], dtype=object))


def carry_lists(conn: Any, run_id: str, previous_run_id: str, rescored: np.ndarray) -> int:
    """Carry the previous run's list of every user not in ``rescored`` into ``run_id``; return the users carried.

    The lists are not copied: ``ml.carried_lists`` gets, per user, the run whose ``ml.recommendations`` rows hold
    them (the previous run, or the run it carried them from), and ``ml.run_recommendations`` reads them as the
    run's. The rows keep their ``generated_at``: the list was generated then, from the evidence the user still
    has. Users no longer in ``analytics.dim_users`` (erased, merged) are left out.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            "insert into ml.carried_lists (run_id, user_id, list_run_id)"
            " select %(run)s, previous.user_id, previous.list_run_id"
            " from (select distinct user_id, run_id as list_run_id from ml.recommendations where run_id = %(previous)s"
            " union all select user_id, list_run_id from ml.carried_lists where run_id = %(previous)s) as previous"
            " inner join analytics.dim_users as users on previous.user_id = users.user_id"
            # a hash anti-join on the rescored users, not a scan of the array per row
            " left join unnest(cast(%(rescored)s as text[])) as rescored (user_id)"
            " on previous.user_id = rescored.user_id"
            " where rescored.user_id is null",
            {"run": run_id, "previous": previous_run_id, "rescored": list(rescored)},
        )
        return cursor.rowcount


def targets(user_ids: pd.Series, rescore: Rescore | None) -> np.ndarray:
    """Positions in ``user_ids`` (``analytics.dim_users``) of the lists to score: all, or the touched users'."""
    if rescore is None:
        return np.arange(len(user_ids), dtype=np.int64)
    return np.flatnonzero(user_ids.isin(rescore.user_ids).to_numpy())


def carry_untouched(conn: Any, run_id: str, rescore: Rescore | None) -> int:
    """:func:`carry_lists` for an incremental run (0 rows for a full one)."""
    return 0 if rescore is None else carry_lists(conn, run_id, rescore.previous_run_id, rescore.user_ids)
