"""``make bench-import``: wall seconds and peak memory of ``recsys import online-retail`` on a large export.

``python -m recsys.dev.bench_import --customers 20000`` writes an invoice export in the UCI Online Retail
layout (:func:`recsys.dev.simulate_invoices.invoice_lines`; about 125 lines per customer, so 20,000
customers give about 2.5 million lines), cached under ``.local/bench/import-<customers>/``, then imports it
``--repeat`` times, each in a fresh Python process, and prints one row per run: the import's wall and CPU
seconds (user + system: less sensitive to other work on the machine), the peak resident memory of the
importing process (``ru_maxrss``) and the rows read, used and rejected. The last line reads exactly::

    import <lines> lines (<MB> MB): wall <seconds> s, CPU <seconds> s, peak RSS <MB> MB

(the fastest run's wall and CPU, the largest run's peak).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

from recsys.db.warehouse import LOCAL_DIR

logger = logging.getLogger(__name__)

#: the export's last day (the UCI data set's)
END_DATE = date(2011, 12, 9)

_WRITE = (
    "import sys; from recsys.dev.bench_import import write_export;"
    " write_export(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])"
)
_CHILD = (
    "import json, sys; from recsys.ingest.importers import import_online_retail;"
    " report = import_online_retail(sys.argv[1], sys.argv[2]);"
    " print(json.dumps({key: report[key] for key in ('rows_read', 'rows_used', 'rows_rejected')}))"
)


def export_for(customers: int, seed: int = 7) -> Path:
    """The invoice export of ``customers`` customers (as many products, a year), written once.

    It is generated in a process of its own: Linux counts the memory of the process that starts a child
    in the child's peak (``ru_maxrss`` survives ``exec``), so the benchmark's own process stays small.
    """
    path = LOCAL_DIR / "bench" / f"import-{customers}" / "online_retail.csv"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", _WRITE, str(customers), str(seed), str(path)], check=True)
        logger.info("wrote the export in %.0f s: %s", time.perf_counter() - started, path)
    return path


def write_export(customers: int, seed: int, path: Path) -> None:
    """Write the export of :func:`export_for` (in the process that calls it)."""
    from recsys.dev.simulate_invoices import invoice_lines

    export = invoice_lines(np.random.default_rng(seed), customers, customers, 365, END_DATE)
    partial = Path(path).with_suffix(".partial")
    export.to_csv(partial, index=False, lineterminator="\n")
    partial.rename(path)


def import_once(path: Path, out_dir: Path) -> dict:
    """Import ``path`` into ``out_dir`` in a fresh Python process: its wall and CPU seconds, peak RSS and counts."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), str(out_dir)], stdout=subprocess.PIPE, text=True)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)  # this child's own usage
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, child.args)
    wall = time.perf_counter() - started
    cpu, peak = usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss": peak, **json.loads(out.splitlines()[-1])}


def render(lines: int, size: int, runs: list[dict]) -> str:
    """One row per run, then the exact last line (fastest wall, largest peak)."""
    out = [f"{'run':>3}  {'wall s':>8}  {'CPU s':>8}  {'peak RSS MB':>11}  {'read':>10}  {'used':>10}  {'rejected':>9}"]
    for number, run in enumerate(runs, 1):
        out.append(
            f"{number:>3}  {run['wall_s']:>8.1f}  {run['cpu_s']:>8.1f}  {run['peak_rss'] / 2**20:>11,.0f}"
            f"  {run['rows_read']:>10,}"
            f"  {run['rows_used']:>10,}  {run['rows_rejected']:>9,}"
        )
    wall, cpu = min(run["wall_s"] for run in runs), min(run["cpu_s"] for run in runs)
    peak = max(run["peak_rss"] for run in runs)
    totals = f"wall {wall:.1f} s, CPU {cpu:.1f} s, peak RSS {peak / 2**20:.0f} MB"
    out.append(f"import {lines} lines ({size / 2**20:.0f} MB): {totals}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys.dev.bench_import", description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000, help="customers (and products) of the export")
    parser.add_argument("--repeat", type=int, default=1, help="imports to run, each in a fresh process")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    path = export_for(args.customers)
    with path.open("rb") as handle:
        lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 24), b"")) - 1
    runs = []
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        for _ in range(args.repeat):
            runs.append(import_once(path, Path(scratch) / "landing"))
    print(render(lines, path.stat().st_size, runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
