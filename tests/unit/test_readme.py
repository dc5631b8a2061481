"""The README's landing-format tables are the ones the loader reads (recsys.landing is the definition)."""

from __future__ import annotations

from pathlib import Path

from recsys import landing

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_documents_the_landing_format_as_defined():
    assert landing.format_markdown().strip() in README


def test_readme_documents_the_mysql_source_schema_as_mapped():
    from recsys.mysql_import import source_schema_markdown

    assert source_schema_markdown().strip() in README
