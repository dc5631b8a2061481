"""The README is the front door: short, its links resolve, and its public tables are the docs' tables."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
#: the README stays a front door; reference material lives in docs/ (the docs site)
MAX_README_BYTES = 12 * 1024

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def relative_links(path: Path) -> list[str]:
    """The relative link targets of a Markdown file (outside code blocks), anchors dropped."""
    text = FENCE.sub("", path.read_text())
    targets = [target.split("#")[0] for target in LINK.findall(text)]
    return [target for target in targets if target and not re.match(r"^[a-z][a-z0-9+.-]*:", target)]


def broken_links(path: Path) -> list[str]:
    return [target for target in relative_links(path) if not (path.parent / target).exists()]


def table_rows(text: str, after: str) -> list[str]:
    """The rows of the first Markdown table after the line ``after``, with links reduced to their text."""
    lines = text.split(f"\n{after}\n", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", line))
    return rows


def test_readme_is_at_most_12_kb():
    assert README.stat().st_size <= MAX_README_BYTES, f"README.md is {README.stat().st_size} bytes"


def test_every_relative_link_of_the_readme_points_at_a_file():
    assert relative_links(README), "no relative link found: the link pattern is broken"
    assert broken_links(README) == []


def test_readme_lists_the_public_tables_of_the_tables_page():
    readme = table_rows(README.read_text(), "## The public tables")
    docs = table_rows((ROOT / "docs" / "tables.md").read_text(), "### The public tables")
    assert len(readme) > 10 and readme == docs


def test_link_check_finds_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("x")
    page.write_text("[ok](there.md#anchor) [web](https://example.org) [gone](missing.md)\n```\n[code](no.md)\n```\n")
    assert broken_links(page) == ["missing.md"]
