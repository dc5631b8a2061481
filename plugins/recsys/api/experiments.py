"""A/B tests in the serving API: which arm a shopper is in, and the list that arm serves.

A test has a name, a challenger model and the share of shoppers it gets. A shopper's arm is decided by a
hash of the test's name and their pseudonymous ``user_id`` (SHA-256, its first 8 bytes read as a fraction of
2**64): the same shopper is always in the same arm, on every server and after a restart, and a new test
name reshuffles everyone. The champion arm serves the published list (``recs.user_recommendations``); the
challenger arm serves the challenger's list of the same run (``ml.challenger_recommendations``, written by
:func:`recsys.orchestration.challenger.recommend_challenger` with the same business rules). A shopper the
challenger has no list for gets the published list outside the test (``arm`` None).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from recsys.serving.placements import FOR_YOU

CHAMPION = "champion"
CHALLENGER = "challenger"
COLUMNS = ("item_id", "score", "reason_code", "reason_text")


@dataclass(frozen=True)
class Experiment:
    """An A/B test: ``challenger`` (a model name) gets ``challenger_share`` of the shoppers."""

    name: str
    challenger: str
    challenger_share: float = 0.5

    def __post_init__(self):
        if not 0 <= self.challenger_share <= 1:
            raise ValueError(f"challenger_share must be between 0 and 1, got {self.challenger_share}")

    def arm(self, user_id: str) -> str:
        """The shopper's arm: :data:`CHALLENGER` for a hash below ``challenger_share``, else :data:`CHAMPION`."""
        digest = hashlib.sha256(f"{self.name}\x00{user_id}".encode()).digest()
        return CHALLENGER if int.from_bytes(digest[:8], "big") / 2**64 < self.challenger_share else CHAMPION


@dataclass(frozen=True)
class Served:
    """A shopper's list and where it came from, as the impression log records it."""

    items: list[dict] | None
    run_id: str | None
    model_name: str | None
    arm: str | None


def published_run(store: Any, placement: str = FOR_YOU) -> tuple[str | None, str | None]:
    """The published ``run_id`` and its champion model of ``placement`` (``recs.runs.placement_champions``)."""
    with store.connection() as conn, conn.cursor() as cursor:
        cursor.execute(  # to_jsonb: a recs.runs published before placements has no placement_champions yet
            "select run_id, coalesce((to_jsonb(runs) ->> 'placement_champions')::json -> %s ->> 'model',"
            " champion_model) from recs.runs as runs where is_published",
            (placement,),
        )
        row = cursor.fetchone()
    return (row[0], row[1]) if row else (None, None)


def challenger_list(store: Any, run_id: str, model_name: str, user_id: str) -> list[dict] | None:
    """The challenger's list of ``user_id`` in the run, in rank order, or ``None`` without one."""
    with store.connection() as conn, conn.cursor() as cursor:
        cursor.execute("select to_regclass('ml.challenger_recommendations') is not null")
        if not cursor.fetchone()[0]:
            return None
        cursor.execute(
            "select item_id, score, reason_code, reason_text from ml.challenger_recommendations"
            " where run_id = %s and model_name = %s and user_id = %s order by item_rank",
            (run_id, model_name, user_id),
        )
        rows = cursor.fetchall()
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows] or None


def serve(store: Any, experiment: Experiment | None, user_id: str | None, placement: str = FOR_YOU) -> Served:
    """The ``placement`` list of a known shopper (``user_id``, pseudonymous) in their arm; ``items`` None without one.

    The A/B test runs on ``for_you`` (the challenger's lists are ``for_you`` lists); another placement serves
    the published list outside the test, named by the model of its rows.
    """
    run_id, champion = published_run(store, placement)
    if user_id is None:
        return Served(None, run_id, None, None)
    if placement != FOR_YOU:
        return Served(store.recommendations(user_id, placement), run_id, champion, None)
    if experiment is not None and run_id is not None:
        arm = experiment.arm(user_id)
        if arm == CHALLENGER:
            items = challenger_list(store, run_id, experiment.challenger, user_id)
            if items:
                return Served(items, run_id, experiment.challenger, arm)
        elif (items := store.recommendations(user_id)) is not None:
            return Served(items, run_id, champion, arm)
    return Served(store.recommendations(user_id), run_id, champion, None)
