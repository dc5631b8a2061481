"""What a warehouse already holds of a shop's deliveries: which shop, which batches in which order, which files.

- One shop per warehouse: the landing directory of its first load (``quality.landing_source``).
- Batches in the order they first arrived (``quality.batches.load_seq``): "the latest batch wins" in staging
  means the latest to arrive, whatever the batch ids are called.
- Daily folders ``<landing dir>/<YYYY-MM-DD>/``, and events files already loaded as another batch (their
  SHA-256 in ``quality.load_audit.file_sha256``), which would pass old events off as new.
"""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

from recsys.ingest.landing import API_BATCH_PREFIX, LandingError


def day_folders(landing_dir: Path, api: bool = False) -> list[str]:
    """The daily delivery folders ``landing_dir/<YYYY-MM-DD>/``, oldest first (empty for a flat directory).

    ``api``: the folders of the serving API's events instead, ``api-<YYYY-MM-DD>`` (:mod:`recsys.api.events`).
    """
    prefix = API_BATCH_PREFIX if api else ""
    days = []
    for path in Path(landing_dir).iterdir():
        day = path.name.removeprefix(prefix) if path.name.startswith(prefix) else ""
        try:
            if path.is_dir() and date.fromisoformat(day).isoformat() == day:
                days.append(path.name)
        except ValueError:
            continue
    return sorted(days)


def check_source(cur, landing_dir: Path) -> None:
    """Record the warehouse's landing directory at its first load; refuse batches of another one.

    Two shops in one warehouse would mix their users, items and models (shop ids may even collide).
    """
    source = str(landing_dir.resolve())
    cur.execute("insert into quality.landing_source (landing_dir) values (%s) on conflict do nothing", (source,))
    cur.execute("select landing_dir from quality.landing_source")
    recorded = cur.fetchone()[0]
    if recorded != source:
        raise LandingError(
            f"{source}: this warehouse holds the shop loaded from {recorded}, and one warehouse holds one shop."
            " Load this one into its own database: set WAREHOUSE_URL to another database (`make run DATA=<dir>`"
            " without WAREHOUSE_URL does that by itself). If it is the same shop in a new folder, run"
            f" `update quality.landing_source set landing_dir = '{source}'` in the warehouse first."
        )


def file_sha256(path: Path, block: int = 1 << 20) -> str:
    """The SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def refuse_redelivery(cur, path: Path, digest: str, batch_id: str) -> None:
    """Refuse an events file byte-identical to one loaded as another batch: yesterday's data, not today's."""
    cur.execute(
        "select batch_id from quality.load_audit where table_name = 'events' and file_sha256 = %s and batch_id <> %s"
        " order by loaded_at limit 1",
        (digest, batch_id),
    )
    found = cur.fetchone()
    if found:
        raise LandingError(
            f"{path}: the same file was loaded as batch {found[0]!r}; loading it as batch {batch_id!r} would pass"
            " old events off as new. Deliver the new day's files (or each day in DIR/<YYYY-MM-DD>/), or load it"
            f" again as batch {found[0]!r} to replace that batch"
        )


def load_sequence(cur, batch_id: str) -> int:
    """The batch's number in arrival order: given at its first load, kept when it is delivered again."""
    cur.execute("insert into quality.batches (batch_id) values (%s) on conflict do nothing", (batch_id,))
    cur.execute("select load_seq from quality.batches where batch_id = %s", (batch_id,))
    return cur.fetchone()[0]
