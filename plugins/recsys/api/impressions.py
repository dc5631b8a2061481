"""What the serving API showed: one impression per item of every list it served, logged and drained to landing.

- :class:`ImpressionLog` appends the items of each served list to ``<spool>/impressions/<YYYY-MM-DD>.jsonl``
  (the day it was shown, UTC) before the API answers: written and flushed, so a crash of the server process
  loses none; a crash of the machine may lose the last ones the disk had not written yet (no ``fsync``, which
  would cost every request a disk flush: an impression is a measurement, not a shopper's order).
- Only shoppers in the published map are logged: an erased person is not in it (and gets 404 when the API
  has the pseudonymization key), so no erased person is ever logged; an unknown shopper is not either.
- :func:`drain` writes each spooled day as ``<landing>/api-<YYYY-MM-DD>/impressions.csv`` (the landing file
  :data:`recsys.ingest.landing.API_FILES` ``impressions``) beside the day's API events, which the day's load
  picks up (``api-<day>`` batch). It streams the spool in blocks (memory stays flat) and rewrites the whole
  day each time, so draining again is idempotent; the counts reconcile (logged = landed).
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from recsys.api.experiments import Experiment, Served
from recsys.ingest import landing

#: the spool's sub-folder of impressions (the events' spool files sit in the folder above)
SUBFOLDER = "impressions"
#: spooled lines read per block by :func:`drain`
DRAIN_BLOCK_LINES = 100_000


class ImpressionLog:
    """Append-only JSON lines per day, one line per item shown (see the module docstring)."""

    def __init__(self, spool_dir: Path | str, experiment: Experiment | None = None):
        self.directory = Path(spool_dir) / SUBFOLDER
        self.directory.mkdir(parents=True, exist_ok=True)
        self.experiment = experiment
        self._lock = threading.Lock()

    def record(self, shop_user_id: str, items: list[dict], served: Served, source: str, placement: str) -> str:
        """Log the list ``items`` shown to ``shop_user_id``; return the new ``request_id``."""
        request_id = uuid.uuid4().hex
        shown_at = datetime.now(UTC)
        in_test = served.arm is not None and self.experiment is not None
        common = {
            "request_id": request_id,
            "user_id": shop_user_id,
            "shown_at": shown_at.isoformat(),
            "run_id": served.run_id,
            "model_name": served.model_name if source == "personalized" else source,
            "arm": served.arm if source == "personalized" else None,
            "experiment": self.experiment.name if in_test else None,
            "challenger_share": self.experiment.challenger_share if in_test else None,
            "placement": placement,
        }
        lines = [json.dumps({**common, "item_id": item["item_id"], "position": n}) for n, item in enumerate(items, 1)]
        if lines:
            with self._lock, (self.directory / f"{shown_at.date().isoformat()}.jsonl").open("a") as handle:
                handle.write("\n".join(lines) + "\n")
                handle.flush()
        return request_id


def drain(spool_dir: Path | str, landing_dir: Path | str) -> dict[str, dict[str, int]]:
    """Write every spooled day of impressions as a landing file; return ``{day: {"logged", "landed"}}``."""
    spec = landing.API_FILES["impressions"]
    counts = {}
    for path in sorted((Path(spool_dir) / SUBFOLDER).glob("*.jsonl")):
        day = path.stem
        out = Path(landing_dir) / f"{landing.API_BATCH_PREFIX}{day}"
        out.mkdir(parents=True, exist_ok=True)
        partial = out / f".{spec.filename}.partial"
        logged = landed = 0
        with path.open(encoding="utf-8") as handle, partial.open("w", encoding="utf-8") as target:
            target.write(",".join(spec.column_names) + "\n")
            # dtype=False: values as logged, no type or date conversion
            for block in pd.read_json(handle, lines=True, chunksize=DRAIN_BLOCK_LINES, dtype=False):
                logged += len(block)
                block = block.reindex(columns=spec.column_names)
                block["position"] = block["position"].astype("Int64")
                block.to_csv(target, index=False, header=False, lineterminator="\n")
                landed += len(block)
        partial.replace(out / spec.filename)
        for name in ("users", "items", "events"):  # the batch's required files: header only unless events drained
            if not (out / landing.FILES[name].filename).exists():
                (out / landing.FILES[name].filename).write_text(",".join(landing.FILES[name].column_names) + "\n")
        counts[day] = {"logged": logged, "landed": landed}
    return counts
