"""The RECSYS_* settings: one list that the code's reads and the settings page agree with; misspelt names stop."""

from __future__ import annotations

import pytest
from test_docs import DOCS, environment_variables_read

from recsys.db.settings import ENVIRONMENT, IGNORED_PREFIXES, check_environment


def test_the_list_is_what_the_code_reads_and_what_the_settings_page_documents():
    read = {name for name in environment_variables_read() if name.startswith("RECSYS_")}
    assert read - set(ENVIRONMENT) == set()  # every setting the code reads is listed
    page = (DOCS / "reference" / "settings.md").read_text()
    assert [name for name in ENVIRONMENT if f"`{name}`" not in page] == []


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
