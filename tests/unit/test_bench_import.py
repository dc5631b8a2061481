"""``recsys.dev.bench_import``: one row per run and the exact last line (fastest run, largest peak)."""

from __future__ import annotations

from recsys.dev import bench_import


def test_the_last_line_takes_the_fastest_run_and_the_largest_peak() -> None:
    runs = [
        dict(wall_s=12.0, cpu_s=10.0, peak_rss=300 * 2**20, rows_read=10, rows_used=9, rows_rejected=1),
        dict(wall_s=11.0, cpu_s=10.5, peak_rss=310 * 2**20, rows_read=10, rows_used=9, rows_rejected=1),
    ]
    text = bench_import.render(2_748_118, 190 * 2**20, runs)
    assert text.splitlines()[-1] == "import 2748118 lines (190 MB): wall 11.0 s, CPU 10.0 s, peak RSS 310 MB"
    assert len(text.splitlines()) == 4  # header, two runs, totals
