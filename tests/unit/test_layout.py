"""The package's layout rules: layers in folders, no reaching into another module's private names, small modules.

See docs/architecture.md for the folders and what each holds.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "plugins" / "recsys"
LAYERS = {
    "db",
    "ingest",
    "quality",
    "features",
    "models",
    "evaluation",
    "serving",
    "usecases",
    "orchestration",
    "reporting",
    "dev",
}
#: modules still above the size limit, with the lines they may not grow past (split them, then drop them here)
OVERSIZE: dict[str, int] = {}
MAX_LINES = 600
#: functions still above the length limit (code lines, docstring excluded), with the lines they may not grow past
LONG_FUNCTIONS = {}
MAX_FUNCTION_LINES = 80


def _python_files(*folders: Path) -> list[Path]:
    return sorted(path for folder in folders for path in folder.rglob("*.py"))


def _private_uses(path: Path) -> list[str]:
    """``from recsys.x import _y`` and ``module._y`` where ``module`` is a recsys module bound by an import."""
    tree = ast.parse(path.read_text(), filename=str(path))
    modules: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("recsys"):
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"{path.name}:{node.lineno} from {node.module} import {alias.name}")
                else:
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            names = [alias for alias in node.names if alias.name.startswith("recsys")]
            modules.update(alias.asname or alias.name.split(".")[0] for alias in names)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
    return found


def test_the_package_is_folders_by_layer():
    folders = {path.name for path in PACKAGE.iterdir() if path.is_dir() and not path.name.startswith("__")}
    modules = {path.name for path in PACKAGE.glob("*.py")}
    assert folders == LAYERS | {"api"} & folders
    assert modules == {"__init__.py", "cli.py"}, "top-level modules other than the CLI belong in a layer folder"
    for folder in folders:
        docstring = (PACKAGE / folder / "__init__.py").read_text()
        assert docstring.startswith('"""'), f"{folder}/__init__.py says what it holds"


@pytest.mark.parametrize("path", _python_files(PACKAGE, ROOT / "tests", ROOT / "dags"), ids=lambda p: p.name)
def test_no_module_uses_another_modules_private_names(path):
    assert _private_uses(path) == []


def test_the_private_name_check_finds_both_forms(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from recsys.db.frames import _hidden\nfrom recsys.db import runs\nruns._secret(1)\nruns.public(2)\n"
    )
    assert _private_uses(sample) == ["sample.py:1 from recsys.db.frames import _hidden", "sample.py:3 runs._secret"]


def _dev_references(source: str) -> list[str]:
    """Imports of ``recsys.dev`` in ``source``, and strings that are its module names (for ``importlib``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append(node.value)
    return [name for name in found if re.fullmatch(r"recsys\.dev(\.\w+)*", name)]


def test_product_code_does_not_import_the_development_tools():
    planted = "import recsys.dev.simulate\nfrom recsys import dev\nx = 'recsys.dev.bench'\n"
    assert _dev_references(planted) == ["recsys.dev.simulate", "recsys.dev", "recsys.dev.bench"]
    assert _dev_references('"""Made by `recsys.dev.local`."""') == []  # prose naming the module is no import
    for path in _python_files(PACKAGE):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "dev" or relative.name == "cli.py":
            continue
        assert _dev_references(path.read_text()) == [], f"{relative} imports a development tool"


def test_modules_stay_small():
    sizes = {str(path.relative_to(PACKAGE)): len(path.read_text().splitlines()) for path in _python_files(PACKAGE)}
    too_big = {name: lines for name, lines in sizes.items() if lines > OVERSIZE.get(name, MAX_LINES)}
    assert too_big == {}, f"modules over {MAX_LINES} lines (or over their entry in OVERSIZE): split them"
    shrunk = {name for name, limit in OVERSIZE.items() if sizes.get(name, 0) <= MAX_LINES}
    assert shrunk == set(), "these are small now: remove them from OVERSIZE"


def _function_lengths(path: Path) -> dict[str, int]:
    """Lines of code of every function of ``path``, from its first statement after the docstring to its end."""
    lengths = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]
            lengths[f"{path.relative_to(PACKAGE)}::{node.name}"] = node.end_lineno - body[0].lineno + 1
    return lengths


def test_functions_stay_short():
    lengths = {name: n for path in _python_files(PACKAGE) for name, n in _function_lengths(path).items()}
    too_long = {name: n for name, n in lengths.items() if n > LONG_FUNCTIONS.get(name, MAX_FUNCTION_LINES)}
    assert too_long == {}, f"functions over {MAX_FUNCTION_LINES} lines (or their entry in LONG_FUNCTIONS): split them"
    shortened = {name for name in LONG_FUNCTIONS if lengths.get(name, 0) <= MAX_FUNCTION_LINES}
    assert shortened == set(), "these are short now: remove them from LONG_FUNCTIONS"


def test_test_files_have_unique_names():
    # pytest imports test files by basename (no packages under tests/): two of one name stop the whole run
    names = [path.name for path in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({name for name in names if names.count(name) > 1}) == []
