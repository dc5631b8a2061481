"""The refit schedule's weekdays: ``RECSYS_FULL_RUN_DAYS`` (recsys.orchestration.schedule)."""

from __future__ import annotations

import pytest

from recsys.orchestration.schedule import full_run_weekdays


@pytest.mark.parametrize(
    ("value", "weekdays"),
    [("all", set(range(7))), ("", set(range(7))), ("sun", {6}), ("Mon, thu", {0, 3}), ("wed,wed", {2})],
)
def test_full_run_days_are_weekday_names_or_all(value, weekdays):
    assert full_run_weekdays(value) == weekdays


def test_every_day_is_a_full_run_by_default(monkeypatch):
    monkeypatch.delenv("RECSYS_FULL_RUN_DAYS", raising=False)
    assert full_run_weekdays() == set(range(7))
    monkeypatch.setenv("RECSYS_FULL_RUN_DAYS", "sat,sun")
    assert full_run_weekdays() == {5, 6}


def test_a_misspelt_day_is_an_error_not_a_week_without_full_runs():
    with pytest.raises(ValueError, match=r"\['sunday'\] are not weekdays"):
        full_run_weekdays("sunday")
