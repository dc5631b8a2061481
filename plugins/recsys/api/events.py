"""Shopper events posted to the API: a durable spool, the live session, and the drain into landing files.

- :class:`Spool` appends every accepted event to ``<spool>/<YYYY-MM-DD>.jsonl`` (the event's day, UTC) and
  fsyncs before the API answers, so an accepted event survives a restart. An event with a client
  ``event_id`` the spool has seen (the last :data:`REMEMBERED_EVENT_IDS`, read back at start) is a duplicate,
  not spooled again.
- :class:`Sessions` keeps each shopper's last events in memory for the next request (see
  :func:`apply_session`), for a bounded number of shoppers (least recently used first out).
- :func:`drain` writes each spooled day as a landing batch ``<landing>/api-<YYYY-MM-DD>/events.csv`` (with
  header-only ``users.csv`` and ``items.csv``) in the shop's own landing directory, beside its daily
  folders: batch ``api-<day>``, which the load of that day loads too, and which never replaces the shop's
  own batch of the day. It rewrites the whole day from the spool each time, so draining again is idempotent
  and nothing accepted is lost; a duplicate ``event_id`` of the day lands once, a line torn by a kill
  mid-write is quarantined in ``quality.rejected_rows``; the counts reconcile
  (read = landed + duplicates + quarantined).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections import OrderedDict, defaultdict, deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, Field

from recsys.ingest import landing, raw_tables

#: an id: 1-128 characters, no white space and no control character (C0, DEL, C1)
ID_PATTERN = r"^[^\s\x00-\x1f\x7f-\x9f]{1,128}$"
#: free text (a search query, a session id): no control character
TEXT_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
#: the ``table_name`` of torn spool lines in ``quality.rejected_rows``
QUARANTINE_TABLE = "api_spool"
#: the reason of a torn spool line
TORN_REASON = "torn: not a whole JSON record (a write cut short, e.g. the API killed mid-write)"
#: bytes read from the end of each spool file for the event ids at start
SPOOL_TAIL_BYTES = 32 * 1024 * 1024
#: event ids the API remembers to answer a retried POST (the most recent ones)
REMEMBERED_EVENT_IDS = 100_000
#: the batch of a day's API events: ``api-<YYYY-MM-DD>``
API_BATCH_PREFIX = landing.API_BATCH_PREFIX


class Event(BaseModel):
    """One shopper event, as the landing format's ``events.csv`` has it (user_id is the shop's own id).

    ``event_id`` is the client's id of the event: a retried POST with the same id is accepted once.
    """

    event_id: str | None = Field(default=None, pattern=ID_PATTERN)
    user_id: str = Field(pattern=ID_PATTERN)
    event_type: Literal[landing.EVENT_TYPES]  # type: ignore[valid-type]  # the one list of event types
    item_id: str | None = Field(default=None, pattern=ID_PATTERN)
    event_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    session_id: str | None = Field(default=None, max_length=128, pattern=TEXT_PATTERN)
    query: str | None = Field(default=None, max_length=1_000, pattern=TEXT_PATTERN)
    quantity: int | None = Field(default=None, ge=1, le=1_000_000)
    price: float | None = Field(default=None, ge=0)
    request_id: str | None = Field(default=None, pattern=ID_PATTERN)  # a click: the list's ``request_id``


class EventBatch(BaseModel):
    events: list[Event] = Field(min_length=1, max_length=500)


class Spool:
    """Append-only JSON lines per day; every append is flushed and fsynced before it returns.

    It remembers the last ``remembered_ids`` event ids spooled, read back from the spool when it starts
    (:func:`spooled_event_ids`), so a retry is a duplicate after a restart too: an event whose id it has
    seen is not spooled again.
    """

    def __init__(self, directory: Path | str, remembered_ids: int = REMEMBERED_EVENT_IDS):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.remembered_ids = remembered_ids
        self._seen: OrderedDict[str, None] = OrderedDict.fromkeys(spooled_event_ids(self.directory, remembered_ids))
        self._lock = threading.Lock()

    def append(self, events: list[Event]) -> tuple[list[Event], list[str]]:
        """Spool the events not seen before; return them, and the ids of the duplicates (in batch order)."""
        with self._lock:
            new, duplicates, ids = [], [], set()
            for event in events:
                if event.event_id is not None and (event.event_id in self._seen or event.event_id in ids):
                    duplicates.append(event.event_id)
                    continue
                ids.add(event.event_id)
                new.append(event)
            self._write(new)
            for event_id in ids - {None}:  # remembered once written: a failed write can be retried
                self._seen[event_id] = None
            for event_id in duplicates:
                self._seen.move_to_end(event_id)
            while len(self._seen) > self.remembered_ids:
                self._seen.popitem(last=False)
            return new, duplicates

    def _write(self, events: list[Event]) -> None:
        by_day: dict[str, list[str]] = defaultdict(list)
        for event in events:
            at = event.event_at if event.event_at.tzinfo else event.event_at.replace(tzinfo=UTC)
            by_day[at.astimezone(UTC).date().isoformat()].append(event.model_dump_json())
        for day, lines in by_day.items():
            with (self.directory / f"{day}.jsonl").open("a+b") as handle:
                end = handle.tell()
                # a line torn by a kill mid-write stays a line of its own (the drain quarantines it)
                torn = end > 0 and os.pread(handle.fileno(), 1, end - 1) != b"\n"
                handle.write((("\n" if torn else "") + "\n".join(lines) + "\n").encode())
                handle.flush()
                os.fsync(handle.fileno())


def spooled_event_ids(directory: Path, limit: int) -> list[str]:
    """The ids of the last ``limit`` events with one in the spool files, oldest first.

    Files are read newest (last written) first, each from at most its last :data:`SPOOL_TAIL_BYTES`; an
    event's id is the first field of its line (``Event.model_dump_json``), so a regex finds it.
    """
    found: list[str] = []
    for path in sorted(directory.glob("*.jsonl"), key=lambda path: path.stat().st_mtime, reverse=True):
        with path.open("rb") as handle:
            start = max(0, handle.seek(0, os.SEEK_END) - SPOOL_TAIL_BYTES)
            handle.seek(start)
            lines = handle.read().decode("utf-8", errors="replace").splitlines()[1 if start else 0 :]
        ids = pd.Series(lines, dtype="object").str.extract(r'^\{"event_id":("(?:[^"\\]|\\.)*")', expand=False)
        found.extend(ids.dropna().map(json.loads).tolist()[::-1])
        if len(found) >= limit:
            break
    return found[:limit][::-1]


class Sessions:
    """The last ``max_events`` events of each shopper (pseudonymous key) in this process.

    At most ``max_users`` shoppers are held: adding to or reading the session of one more forgets the
    shopper least recently added to or read.
    """

    def __init__(self, max_events: int = 50, max_users: int = 100_000):
        self.max_events, self.max_users = max_events, max_users
        self._events: OrderedDict[str, deque] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._events)

    def add(self, user_id: str, event: Event) -> None:
        with self._lock:
            if user_id not in self._events:
                self._events[user_id] = deque(maxlen=self.max_events)
            self._events.move_to_end(user_id)
            self._events[user_id].append(event)
            while len(self._events) > self.max_users:
                self._events.popitem(last=False)

    def recent(self, user_id: str) -> list[Event]:
        with self._lock:
            if user_id not in self._events:
                return []
            self._events.move_to_end(user_id)
            return list(self._events[user_id])


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


def read_spool(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The events of one spool file, and its lines that are not one (``line_number``, ``reason``, ``raw_record``).

    A line that is not a whole JSON record was torn by a write cut short (the API killed mid-write). It is
    kept as its hash and length only, as the loader keeps unparsed lines that could hold personal data.
    """
    records, rejected = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            records.append(record)
            continue
        raw = json.dumps({"sha256": hashlib.sha256(line.encode()).hexdigest(), "chars": len(line)})
        rejected.append({"line_number": number, "reason": TORN_REASON, "raw_record": raw})
    events = pd.DataFrame(records, columns=list(Event.model_fields))
    return events, pd.DataFrame(rejected, columns=["line_number", "reason", "raw_record"])


def quarantine(conn: Any, day: str, source_file: str, rejected: pd.DataFrame) -> None:
    """Replace the quarantined spool lines of ``day`` in ``quality.rejected_rows`` (table ``api_spool``); commit."""
    raw_tables.create_raw_tables(conn)
    batch_id = f"{API_BATCH_PREFIX}{day}"
    buffer = io.StringIO()
    rejected.assign(batch_id=batch_id, table_name=QUARANTINE_TABLE, source_file=source_file)[
        ["batch_id", "table_name", "source_file", "line_number", "reason", "raw_record"]
    ].to_csv(buffer, index=False, header=False)
    buffer.seek(0)
    with conn.cursor() as cursor:
        cursor.execute(
            "delete from quality.rejected_rows where batch_id = %s and table_name = %s", (batch_id, QUARANTINE_TABLE)
        )
        cursor.copy_expert(
            "copy quality.rejected_rows (batch_id, table_name, source_file, line_number, reason, raw_record)"
            " from stdin with (format csv)",
            buffer,
        )
    conn.commit()


def drain(spool_dir: Path | str, landing_dir: Path | str, conn: Any) -> dict[str, dict[str, int]]:
    """Write every spooled day as a landing batch; return ``{day: {"read", "landed", "duplicates", "quarantined"}}``.

    An event whose ``event_id`` came earlier in the day is a duplicate (a retry of an event older than the API
    remembered): it is left out. A torn line (:func:`read_spool`) goes to ``quality.rejected_rows`` of the
    warehouse ``conn`` (:func:`quarantine`). ``read = landed + duplicates + quarantined``.
    """
    spec = landing.FILES["events"]
    counts = {}
    for path in sorted(Path(spool_dir).glob("*.jsonl")):
        day = path.stem
        events, rejected = read_spool(path)
        quarantine(conn, day, path.name, rejected)
        duplicate = events["event_id"].notna() & events.duplicated(subset="event_id")
        events = events[~duplicate]
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
        counts[day] = {
            "read": len(events) + int(duplicate.sum()) + len(rejected),
            "landed": len(events),
            "duplicates": int(duplicate.sum()),
            "quarantined": len(rejected),
        }
    return counts
