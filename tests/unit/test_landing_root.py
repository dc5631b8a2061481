"""The DAG param landing_dir is confined to RECSYS_LANDING_ROOT: a DAG user cannot point a worker elsewhere."""

from __future__ import annotations

import pytest

from recsys.orchestration.tasks import landing_dir


@pytest.fixture
def root(tmp_path, monkeypatch):
    (tmp_path / "landing" / "shop_a").mkdir(parents=True)
    (tmp_path / "secrets").mkdir()
    monkeypatch.setenv("RECSYS_LANDING_ROOT", str(tmp_path / "landing"))
    return tmp_path


def test_a_directory_inside_the_root_is_accepted(root):
    assert landing_dir(str(root / "landing" / "shop_a")) == root / "landing" / "shop_a"


@pytest.mark.parametrize("outside", ["secrets", "landing/../secrets", "landing/escape", "/etc"])
def test_a_path_outside_the_root_is_refused_with_the_setting_named(root, outside):
    (root / "landing" / "escape").symlink_to(root / "secrets")
    with pytest.raises(ValueError, match=r"outside the landing root .*RECSYS_LANDING_ROOT"):
        landing_dir(str(root / outside) if not outside.startswith("/") else outside)


def test_without_a_root_the_local_run_takes_any_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("RECSYS_LANDING_ROOT", raising=False)
    assert landing_dir(str(tmp_path)) == tmp_path
