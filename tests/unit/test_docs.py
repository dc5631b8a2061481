"""The docs pages state what the code does: generated tables, settings, links and the API reference."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from test_readme import broken_links

from recsys.ingest import landing
from recsys.ingest.mysql_import import source_schema_markdown

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_landing_format_page_documents_the_format_as_defined():
    assert landing.format_markdown().strip() in (DOCS / "data" / "landing-format.md").read_text()


def test_importers_page_documents_the_mysql_source_schema_as_mapped():
    assert source_schema_markdown().strip() in (DOCS / "data" / "importers.md").read_text()


#: the API reference's index, written at build time by docs/hooks.py
GENERATED = DOCS / "reference" / "api" / "index.md"


def test_every_relative_link_of_the_docs_points_at_a_file():
    assert len(PAGES) > 15
    broken = {
        str(page.relative_to(ROOT)): [
            link for link in broken_links(page) if (page.parent / link).resolve() != GENERATED
        ]
        for page in PAGES
    }
    assert {page: links for page, links in broken.items() if links} == {}


def test_every_included_file_exists():
    includes = [m for page in PAGES for m in re.findall(r'^--8<-- "([^"]+)"', page.read_text(), re.M)]
    assert "CHANGELOG.md" in includes
    assert [path for path in includes if not (ROOT / path).exists()] == []


def environment_variables_read() -> set[str]:
    """Every environment variable named in a read by plugins/, dags/ or dbt_project/."""
    pattern = re.compile(
        r"""(?:environ\.get\(|environ\[|getenv\(|environ\.setdefault\(|env_var\()\s*["']([A-Z][A-Z0-9_]+)["']"""
    )
    files = [*ROOT.joinpath("plugins").rglob("*.py"), *ROOT.joinpath("dags").rglob("*.py")]
    files += [*ROOT.joinpath("dbt_project").rglob("*.sql"), *ROOT.joinpath("dbt_project").rglob("*.yml")]
    files = [path for path in files if "target" not in path.parts and "dbt_packages" not in path.parts]
    return {name for path in files for name in pattern.findall(path.read_text())}


def settings_page() -> str:
    """``reference/settings.md`` as the site renders it: with the tables the hooks generate."""
    return _hooks().settings_page((DOCS / "reference" / "settings.md").read_text())


def test_settings_page_names_every_environment_variable_the_code_reads():
    names = environment_variables_read()
    assert {"WAREHOUSE_URL", "REDIS_URL", "RECSYS_PSEUDONYM_KEY", "RECSYS_PGDATABASE"} <= names
    page = settings_page()
    assert sorted(name for name in names if f"`{name}`" not in page) == []


def test_api_reference_follows_the_package_tree(tmp_path):
    """A planted tree: a module moved into a subpackage gets its page and nav entry; private ones do not."""
    hooks = _hooks()
    root = tmp_path / "plugins" / "recsys"
    for path in [
        "__init__.py",
        "cli.py",
        "__main__.py",
        "_private.py",
        "db/__init__.py",
        "db/frames.py",
        "db/_helpers.py",
        "scripts/not_a_package.py",
    ]:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text('"""Doc."""\n')
    names = hooks.modules(root)
    assert names == ["recsys", "recsys.cli", "recsys.db", "recsys.db.frames"]
    packages = {"recsys", "recsys.db"}
    assert hooks.page_uri("recsys.db", packages) == "reference/api/recsys/db/index.md"
    assert hooks.page_uri("recsys.db.frames", packages) == "reference/api/recsys/db/frames.md"
    assert hooks._nav(names, packages) == [
        "reference/api/index.md",
        {"recsys": "reference/api/recsys/index.md"},
        {"recsys.cli": "reference/api/recsys/cli.md"},
        {"recsys.db": ["reference/api/recsys/db/index.md", {"recsys.db.frames": "reference/api/recsys/db/frames.md"}]},
    ]


def test_api_reference_lists_every_module_of_the_real_package():
    names = _hooks().modules(ROOT / "plugins" / "recsys")
    on_disk = {
        ".".join(path.relative_to(ROOT / "plugins").with_suffix("").parts)
        for path in (ROOT / "plugins" / "recsys").rglob("*.py")
        if not path.name.startswith("_")
    }
    assert "recsys.ingest.landing" in on_disk or "recsys.ingest.landing" in on_disk
    assert on_disk <= set(names)


def test_every_relative_link_of_the_other_markdown_files_points_at_a_file():
    others = [ROOT / "CHANGELOG.md", ROOT / "dbt_project" / "README.md", ROOT / "dbt_project" / "POLICY.md"]
    assert {str(path.relative_to(ROOT)): broken_links(path) for path in others if broken_links(path)} == {}
