"""The RECSYS_* settings: one list that the code's reads and the settings page agree with; misspelt names stop."""

from __future__ import annotations

import pytest
from test_docs import DOCS, environment_variables_read, settings_page

from recsys.db.settings import ENVIRONMENT, EXTENDED, IGNORED_PREFIXES, SETTINGS, check_environment


def test_the_list_is_what_the_code_reads_and_what_the_settings_page_documents():
    read = environment_variables_read()
    listed = {setting.name for section in SETTINGS.values() for setting in section}
    assert read - listed - set(EXTENDED) == set()  # every variable the code reads is listed, so documented
    assert {name for name in read if name.startswith("RECSYS_")} - set(ENVIRONMENT) == set()
    page = settings_page()
    assert [name for name in sorted(listed) if f"| `{name}` |" not in page] == []
    assert [name for name in EXTENDED if f"`{name}`" not in page] == []


def test_every_section_of_the_list_has_its_table_on_the_settings_page():
    """A section without its marker would leave its variables off the page: each marker renders its rows."""
    source = (DOCS / "reference" / "settings.md").read_text()
    assert [section for section in SETTINGS if f"<!-- environment: {section} -->" not in source] == []
    page = settings_page()
    assert "<!-- environment:" not in page and "<!-- models.toml settings -->" not in page
    # one row per setting, as the list says it (the compose section repeats two variables "as above")
    key_row = SETTINGS["secrets"][0]
    assert f"| `{key_row.name}` | {key_row.meaning} | {key_row.default} | {key_row.read_by} |" in page
    assert page.count("| `RECSYS_PSEUDONYM_KEY` |") == 2
    assert "| `[privacy]` | `min_segment_users` |" in page


def test_a_misspelt_setting_is_an_error_naming_the_closest_valid_one():
    with pytest.raises(ValueError, match=r"RECSYS_GX_DOCS_KEEP_RUN \(did you mean RECSYS_GX_DOCS_KEEP_RUNS\?\)"):
        check_environment({"RECSYS_GX_DOCS_KEEP_RUN": "3", "RECSYS_PSEUDONYM_KEY": "x", "HOME": "/root"})
    check_environment({"RECSYS_PSEUDONYM_KEY": "x", f"{IGNORED_PREFIXES[0]}SERVER_URL": "postgresql://", "PATH": ""})


def test_the_recsys_command_stops_on_a_misspelt_setting(monkeypatch, capsys):
    from recsys import cli

    monkeypatch.setenv("RECSYS_LANDING_RO0T", "/tmp")
    with pytest.raises(SystemExit) as stopped:
        cli.main(["warehouse-url"])
    assert stopped.value.code == 2 and "did you mean RECSYS_LANDING_ROOT" in capsys.readouterr().err
