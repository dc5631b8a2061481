"""The repository's Python passes ruff (lint and format); SQL is linted by sqlfluff in tests/dbt."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUFF = str(Path(sys.executable).parent / "ruff")


def test_ruff_check_passes():
    result = subprocess.run([RUFF, "check", "dags", "plugins", "tests"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_ruff_format_is_clean():
    result = subprocess.run(
        [RUFF, "format", "--check", "dags", "plugins", "tests"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout
