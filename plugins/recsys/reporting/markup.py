"""HTML building blocks of the analysts' report: a cell's text, an escaped table, an inline SVG bar chart, the CSS."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

import pandas as pd

PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"]

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
  max-width: 62em; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .6em 0 1em; font-size: .92em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.champion td { background: #fff4d6; font-weight: 600; }
.absent { color: #8a4b00; font-style: italic; } .note { color: #555; font-size: .9em; }
.figure { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
svg text { font-family: inherit; font-size: 12px; fill: #222; }
nav a { margin-right: .8em; }
"""


def fmt(value: object) -> str:
    """A cell: ints with thousands separators, floats with four decimals, missing as an en dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (hasattr(value, "dtype") and pd.api.types.is_integer_dtype(value.dtype)):
        return f"{int(value):,}"
    if isinstance(value, float | Decimal) or (hasattr(value, "dtype") and pd.api.types.is_float_dtype(value.dtype)):
        return f"{float(value):.4f}"
    return str(value)


def text(value: object) -> str:
    """A scalar as text; timestamps in UTC whatever the session time zone."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "–"
    if isinstance(value, datetime):
        return str(pd.Timestamp(value).tz_convert("UTC") if value.tzinfo else pd.Timestamp(value))
    return str(value)


def is_number(value: object) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool) or hasattr(value, "dtype")


def table(frame: pd.DataFrame, highlight: str | None = None, key: str | None = None) -> str:
    """An HTML table of ``frame`` (escaped); the row whose ``key`` column equals ``highlight`` is marked."""
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in frame.columns)
    rows = []
    for record in frame.astype(object).to_dict("records"):  # aggregate rows only: a few dozen at most
        cells = "".join(
            f'<td class="num">{html.escape(fmt(value))}</td>'
            if is_number(value)
            else f"<td>{html.escape(fmt(value))}</td>"
            for value in record.values()
        )
        marked = key is not None and highlight is not None and record.get(key) == highlight
        rows.append(f'<tr class="champion">{cells}</tr>' if marked else f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def bar_chart(
    labels: Sequence[str],
    series: dict[str, Sequence[float]],
    title: str,
    highlight: str | None = None,
    counts: bool = False,
) -> str:
    """Horizontal (grouped) bars as inline SVG: one group per label, one bar per series; NaN bars are left out.

    A single series shares one scale; with several, each group has its own (its longest bar is full width), so
    metrics of different ranges can sit in one chart and each group compares the series on one metric.

    Parameters
    ----------
    labels : sequence of str
        One group of bars per label, top to bottom.
    series : dict of str to sequence of float
        Bar values per series, aligned with ``labels``; more than one series draws a legend.
    title : str
        Caption above the chart (also the SVG's accessible title).
    highlight : str, optional
        A label drawn in bold with a star (the champion).
    counts : bool, default False
        Values are counts: printed as integers.
    """
    label_width, bar_width, bar_height, gap = 210, 300, 14, 8
    grid = pd.DataFrame(
        {name: pd.to_numeric(pd.Series(list(values)), errors="coerce") for name, values in series.items()}
    )
    # one scale per chart for a single series; per group for several (a group compares one quantity)
    top = grid.clip(lower=0).max(axis=1) if len(series) > 1 else pd.Series(grid.clip(lower=0).max().max(), grid.index)
    top = top.where(top > 0, 1.0).fillna(1.0)
    legend_height = 18 if len(series) > 1 else 0
    group_height = bar_height * len(series) + gap
    height = 24 + legend_height + group_height * len(labels)
    width = label_width + bar_width + 80
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>{html.escape(title)}</title>',
        f'<text x="0" y="14" font-weight="bold">{html.escape(title)}</text>',
    ]
    x = label_width
    for index, name in enumerate(series if len(series) > 1 else []):
        parts.append(f'<rect x="{x}" y="22" width="10" height="10" fill="{PALETTE[index % len(PALETTE)]}"/>')
        parts.append(f'<text x="{x + 14}" y="31">{html.escape(name)}</text>')
        x += 30 + 8 * len(name)
    for row, label in enumerate(labels):
        y0 = 24 + legend_height + row * group_height
        bold = ' font-weight="bold"' if label == highlight else ""
        shown = str(label) if len(str(label)) <= 26 else str(label)[:25] + "…"  # the table beside has it whole
        shown = f"★ {shown}" if label == highlight else shown
        parts.append(
            f'<text x="{label_width - 6}" y="{y0 + bar_height * len(series) / 2 + 4:.0f}" text-anchor="end"{bold}>'
            f"{html.escape(shown)}</text>"
        )
        for index, name in enumerate(series):
            value = float(grid[name].iloc[row])
            y = y0 + index * bar_height
            if math.isnan(value):
                parts.append(f'<text x="{label_width + 4}" y="{y + 11}">–</text>')
                continue
            length = max(0.0, value) / top.iloc[row] * bar_width
            color = PALETTE[index % len(PALETTE)]
            parts.append(
                f'<rect x="{label_width}" y="{y}" width="{length:.1f}" height="{bar_height - 2}" fill="{color}"/>'
            )
            shown_value = fmt(round(value) if counts else value)
            parts.append(f'<text x="{label_width + length + 4:.1f}" y="{y + 11}">{html.escape(shown_value)}</text>')
    parts.append("</svg>")
    return "".join(parts)
