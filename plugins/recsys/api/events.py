"""Shopper events posted to the API: a durable spool, the live session, and the drain into landing files.

- :class:`Spool` appends every accepted event to ``<spool>/<YYYY-MM-DD>.jsonl`` (the event's day, UTC) and
  fsyncs before the API answers, so an accepted event survives a restart.
- :class:`Sessions` keeps each shopper's last events in memory for the next request (see
  :func:`apply_session`).
- :func:`drain` writes each spooled day as a landing batch ``<landing>/api-<YYYY-MM-DD>/events.csv`` (with
  header-only ``users.csv`` and ``items.csv``) in the shop's own landing directory, beside its daily
  folders: batch ``api-<day>``, which the load of that day loads too, and which never replaces the shop's
  own batch of the day. It rewrites the whole day from the spool each time, so draining again is idempotent
  and nothing accepted is lost; the counts reconcile (accepted = landed).
"""

from __future__ import annotations

import json
import os
import threading
from collections import defaultdict, deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import BaseModel, Field

from recsys.ingest import landing

ID_PATTERN = r"^[^\s\x00]{1,128}$"
#: the batch of a day's API events: ``api-<YYYY-MM-DD>``
API_BATCH_PREFIX = landing.API_BATCH_PREFIX


class Event(BaseModel):
    """One shopper event, as the landing format's ``events.csv`` has it (user_id is the shop's own id)."""

    user_id: str = Field(pattern=ID_PATTERN)
    event_type: Literal[landing.EVENT_TYPES]  # type: ignore[valid-type]  # the one list of event types
    item_id: str | None = Field(default=None, pattern=ID_PATTERN)
    event_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    session_id: str | None = Field(default=None, max_length=128)
    query: str | None = Field(default=None, max_length=1_000)
    quantity: int | None = Field(default=None, ge=1, le=1_000_000)
    price: float | None = Field(default=None, ge=0)
    request_id: str | None = Field(default=None, pattern=ID_PATTERN)  # a click: the list's ``request_id``


class EventBatch(BaseModel):
    events: list[Event] = Field(min_length=1, max_length=500)


class Spool:
    """Append-only JSON lines per day; every append is flushed and fsynced before it returns."""

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def append(self, events: list[Event]) -> None:
        by_day: dict[str, list[str]] = defaultdict(list)
        for event in events:
            at = event.event_at if event.event_at.tzinfo else event.event_at.replace(tzinfo=UTC)
            by_day[at.astimezone(UTC).date().isoformat()].append(event.model_dump_json())
        with self._lock:
            for day, lines in by_day.items():
                with (self.directory / f"{day}.jsonl").open("a", encoding="utf-8") as handle:
                    handle.write("\n".join(lines) + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())


class Sessions:
    """The last ``max_events`` events of each shopper (pseudonymous key) in this process."""

    def __init__(self, max_events: int = 50):
        self._events: dict[str, deque] = defaultdict(lambda: deque(maxlen=max_events))
        self._lock = threading.Lock()

    def add(self, user_id: str, event: Event) -> None:
        with self._lock:
            self._events[user_id].append(event)

    def recent(self, user_id: str) -> list[Event]:
        with self._lock:
            return list(self._events.get(user_id, ()))


def apply_session(
    items: list[dict],
    session: list[Event],
    categories: dict[str, str],
    repeat_categories: set[str],
    similar_to_viewed: set[str],
) -> list[dict]:
    """The published list after the shopper's live session.

    Items bought in the session leave the list unless their category is repeat-purchase (the run's rule);
    items similar to what the session viewed or carted move to the top, in their published order. The list
    is only filtered and reordered, never extended, so the run's business rules still hold.
    """
    bought = {event.item_id for event in session if event.event_type == "purchase"}
    gone = {item for item in bought if categories.get(item) not in repeat_categories}
    kept = [item for item in items if item["item_id"] not in gone]
    boosted = [
        {**item, "reason_code": "similar_to_session", "reason_text": "Similar to what you just looked at"}
        for item in kept
        if item["item_id"] in similar_to_viewed
    ]
    return boosted + [item for item in kept if item["item_id"] not in similar_to_viewed]


def drain(spool_dir: Path | str, landing_dir: Path | str) -> dict[str, dict[str, int]]:
    """Write every spooled day as a landing batch; return ``{day: {"accepted", "landed"}}``."""
    spec = landing.FILES["events"]
    counts = {}
    for path in sorted(Path(spool_dir).glob("*.jsonl")):
        day = path.stem
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        events = pd.DataFrame([json.loads(line) for line in lines], columns=list(Event.model_fields))
        events["event_at"] = pd.to_datetime(events["event_at"], utc=True, format="ISO8601").dt.strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ"
        )
        events["quantity"] = events["quantity"].astype("Int64")
        out = Path(landing_dir) / f"{API_BATCH_PREFIX}{day}"
        out.mkdir(parents=True, exist_ok=True)
        partial = out / ".events.csv.partial"
        events.reindex(columns=spec.column_names).to_csv(partial, index=False, lineterminator="\n")
        partial.replace(out / spec.filename)
        for name in ("users", "items"):  # required files of a batch: this one has no rows of them
            (out / landing.FILES[name].filename).write_text(",".join(landing.FILES[name].column_names) + "\n")
        counts[day] = {"accepted": len(lines), "landed": len(events)}
    return counts
