"""``recsys report`` and ``recsys docs`` on a real database holding hand-written contract rows.

The warehouse below is small enough to know every number of the report by hand:
two runs (only the published one is reported), evaluation rows in the names of
the shared contract, profiles and tags with groups above and below k-anonymity,
quality checks, and hostile text in places a report prints.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import psycopg2
import pytest

from recsys.ingest.raw_tables import QUALITY_DDL
from recsys.quality.gates import RESULTS_DDL

PLUGINS = str(Path(__file__).resolve().parents[2] / "plugins")
HOSTILE = '<script>alert("pwned")</script> & <b>bold</b>'
HOSTILE_TAG = "brand:<img src=x onerror=alert(1)>"

#: the dbt models the report reads, created from their contracts (tests/conftest.py)
TABLES = ("runs", "model_evaluations", "user_profiles", "user_interest_tags")
EVALUATION_ROW = (
    "insert into recs.model_evaluations (run_id, model_name, variant, segment, metric, k, metric_value)"
    " values (%s, %s, %s, %s, %s, %s, %s)"
)

# (model, variant, segment, metric, k, value) of the published run
EVALUATIONS = [
    ("popularity", "all_items", "all", "ndcg", 10, 0.1),
    ("popularity", "all_items", "all", "precision", 10, 0.05),
    ("popularity", "all_items", "all", "coverage", 10, 0.02),
    ("item_knn", "all_items", "all", "ndcg", 10, 0.3125),
    ("item_knn", "all_items", "all", "precision", 10, 0.0625),
    ("item_knn", "all_items", "all", "coverage", 10, 0.4),
    ("item_knn", "all_items", "all", "diversity", 10, 0.5),
    ("item_knn", "new_items", "all", "ndcg", 10, 0.2),
    ("item_knn", "all_items", "lifecycle_stage=active", "ndcg", 10, 0.7777),  # a segment: not in the comparison
    # cold start (contract: segment new_users, variant all_items)
    ("popularity", "all_items", "new_users", "ndcg", 10, 0.08),
    ("segment_popularity", "all_items", "new_users", "ndcg", 10, 0.1),
    ("cold_start_demographic", "all_items", "new_users", "ndcg", 10, 0.12),
    ("popularity", "all_items", "new_users", "lift_vs_popularity", 10, 1.0),
    ("segment_popularity", "all_items", "new_users", "lift_vs_popularity", 10, 1.25),
    ("cold_start_demographic", "all_items", "new_users", "lift_vs_popularity", 10, 1.5),
    ("cold_start_demographic", "all_items", "new_users", "users", 0, 321.0),
    # promotions
    ("promotion_propensity", "promotion", "all", "roc_auc", 0, 0.75),
    ("promotion_propensity", "promotion", "all", "lift_top_decile", 0, 3.5),
    ("promotion_everyone", "promotion", "all", "lift_top_decile", 0, 1.0),
    ("promotion_propensity", "promotion", "promotion:P7", "lift_top_decile", 0, 4.25),
    # diversity: the champion after re-ranking
    ("item_knn", "business_rules", "all", "diversity", 10, 0.6),
    ("item_knn", "reranked", "all", "ndcg", 10, 0.3),
    ("item_knn", "reranked", "all", "diversity", 10, 0.75),
    ("item_knn", "reranked", "all", "category_coverage", 10, 4.5),
]


def execute(url: str, statement: str, params: tuple | list = ()) -> None:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        if isinstance(params, list):
            cur.executemany(statement, params)
        else:
            cur.execute(statement, params)
    conn.close()


@pytest.fixture
def warehouse(database: str, contract_tables) -> str:
    contract_tables(database, *TABLES)
    execute(database, QUALITY_DDL + RESULTS_DDL)
    runs = (
        "insert into recs.runs (run_id, started_at, finished_at, status, champion_model, champion_reason,"
        " champion_params, validation_cutoff_at, data_cutoff_at, eval_cutoff_at, data_interval_start,"
        " data_interval_end) values (%s, now(), now(), %s, %s, %s, '{}', %s, %s, %s, %s, %s)"
    )
    execute(
        database,
        runs,
        [
            ("run_old", "succeeded", "popularity", "old", "2026-10-18", "2026-11-01", "2026-10-25", None, "2026-11-01"),
            ("run_new", "published", "item_knn", HOSTILE, "2026-11-18", "2026-12-02", "2026-11-25", None, "2026-12-02"),
        ],
    )
    rows = [("run_new", *row) for row in EVALUATIONS] + [("run_old", "item_knn", "all_items", "all", "ndcg", 10, 0.9)]
    execute(database, EVALUATION_ROW, rows)
    # 120 champions, 60 loyal, 10 lost (fewer than min_segment_users = 50: not shown)
    execute(
        database,
        """
        insert into analytics.user_profiles (user_id, rfm_segment, spending_power, lifecycle_stage)
        select 'u' || n, case when n <= 120 then 'champions' when n <= 180 then 'loyal' else 'lost' end,
            case when n <= 100 then 'high' end, 'active'
        from generate_series(1, 190) as n""",
    )
    execute(
        database,
        """
        insert into analytics.user_interest_tags (user_id, tag, weight, tag_rank)
        select 'u' || n, 'category:shoes', 0.5, 1 from generate_series(1, 100) as n
        union all select 'u' || n, %s, 0.25, 2 from generate_series(1, 70) as n
        union all select 'u' || n, 'brand:rare', 0.1, 3 from generate_series(1, 5) as n
        union all select 'u' || n, 'brand:deep', 0.1, 4 from generate_series(1, 80) as n""",
        (HOSTILE_TAG,),
    )
    checks = """
        insert into quality.check_results (run_id, gate, suite, table_name, expectation_type, severity, success,
            observed_value)
        values (%s, %s, %s, 'events', %s, %s, %s, %s)"""
    execute(
        database,
        checks,
        [
            ("run_new", "raw", "raw_events", "expect_column_values_to_not_be_null", "critical", True, None),
            ("run_new", "raw", "raw_events", "expect_column_values_to_be_in_set", "warning", False, HOSTILE),
            ("run_new", "marts_and_recs", "ml_recommendations", "expect_table_row_count", "critical", True, None),
            ("run_old", "raw", "raw_events", "expect_column_values_to_not_be_null", "critical", False, None),
        ],
    )
    execute(
        database,
        "insert into quality.load_audit values ('b1', 'events', 'events.csv', 1000, 990, 10, null, now())",
    )
    execute(
        database,
        "insert into quality.rejected_rows values ('b1', 'events', 'events.csv', %s, %s, 'x')",
        [(line, "bad timestamp" if line < 8 else "too many fields") for line in range(10)],
    )
    return database


def report(url: str, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WAREHOUSE_URL": url, "PYTHONPATH": PLUGINS}
    return subprocess.run(
        [sys.executable, "-m", "recsys.cli", "report", "--out", str(out)], env=env, capture_output=True, text=True
    )


def section(document: str, anchor: str) -> str:
    found = re.search(rf'<section id="{anchor}">(.*?)</section>', document, re.S)
    assert found, anchor
    return found.group(1)


def table_rows(fragment: str) -> list[list[str]]:
    """Every row of every table in ``fragment`` as unescaped cell texts."""
    return [
        [html.unescape(cell) for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", fragment, re.S)
    ]


def test_report_of_the_published_run_holds_its_numbers(warehouse, tmp_path):
    out = tmp_path / "report.html"
    result = report(warehouse, out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {out}"
    document = out.read_text()

    # self-contained: nothing to fetch, nothing to run
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", document, re.I)
    assert not re.search(r"<script|<link|@import|url\(", document, re.I)
    # the charts are inline SVG that parses as XML
    charts = re.findall(r"<svg .*?</svg>", document, re.S)
    assert len(charts) >= 8
    for chart in charts:
        ElementTree.fromstring(chart)

    run = table_rows(section(document, "run"))
    assert ["run_id", "run_new"] in run and ["champion_model", "item_knn"] in run
    assert ["champion_reason", HOSTILE] in run  # printed as text
    assert ["data_cutoff_at", "2026-12-02 00:00:00+00:00"] in run
    # selection on [validation_cutoff_at, eval_cutoff_at), test on [eval_cutoff_at, data_cutoff_at)
    assert ["test", "2026-11-25 00:00:00+00:00", "2026-11-25 00:00:00+00:00", "2026-12-02 00:00:00+00:00"] in run
    assert ["selection (validation)", *["2026-11-18 00:00:00+00:00"] * 2, "2026-11-25 00:00:00+00:00"] in run

    profiles = table_rows(section(document, "profiles"))
    assert ["champions", "120", f"{120 / 190:.4f}"] in profiles and ["loyal", "60", f"{60 / 190:.4f}"] in profiles
    assert ["lost", "fewer than 50", "fewer than 50"] in profiles
    assert ["(none)", "90", f"{90 / 190:.4f}"] in profiles and ["active", "190", "1.0000"] in profiles

    tags = section(document, "tags")
    assert table_rows(tags)[1:] == [["category:shoes", "100", "0.5000"], [HOSTILE_TAG, "70", "0.2500"]]
    assert "brand:rare" not in tags and "brand:deep" not in tags  # too few users; not in anyone's top 3

    models = section(document, "models")
    rows = table_rows(models)
    assert rows[0] == ["model", "ndcg@10", "precision@10", "coverage@10", "diversity@10"]
    assert ["item_knn", "0.3125", "0.0625", "0.4000", "0.5000"] in rows
    assert ["popularity", "0.1000", "0.0500", "0.0200", "–"] in rows
    assert '<tr class="champion"><td>item_knn</td>' in models
    # best NDCG first; the bars scale to it (300 px): popularity's is 0.1 / 0.3125 of that
    bars = re.findall(r'<rect x="210" y="\d+" width="([\d.]+)"', models.split("</svg>")[0])
    assert bars == ["300.0", "96.0"] and rows[1][0] == "item_knn"
    assert ["item_knn", "0.2000"] in rows  # new items
    assert "0.7777" not in models and "0.9000" not in document  # segment rows, the older run

    cold = table_rows(section(document, "cold-start"))
    assert cold[0] == ["model", "ndcg@10", "lift_vs_popularity@10", "users"]
    assert cold[1:] == [
        ["popularity", "0.0800", "1.0000", "–"],
        ["segment_popularity", "0.1000", "1.2500", "–"],
        ["cold_start_demographic", "0.1200", "1.5000", "321"],
    ]

    promotions = table_rows(section(document, "promotions"))
    assert ["promotion_propensity", "0.7500", "3.5000"] in promotions
    assert ["promotion:P7", "4.2500"] in promotions

    diversity = table_rows(section(document, "diversity"))
    assert diversity[0] == ["metric", "as trained", "business rules", "re-ranked", "change"]
    assert ["ndcg@10", "0.3125", "–", "0.3000", "-0.0125"] in diversity
    assert ["diversity@10", "0.5000", "0.6000", "0.7500", "0.2500"] in diversity
    assert ["category_coverage@10", "–", "–", "4.5000", "–"] in diversity
    # grouped bars scale per metric: the diversity group is 0.5, 0.6, 0.75 of 300 px / 0.75
    chart = section(document, "diversity").split("</svg>")[0]
    widths = re.findall(r'<rect x="210" y="\d+" width="([\d.]+)" height="12"', chart)
    # bars: ndcg 0.3125 and 0.3, precision, coverage, diversity x 3, category_coverage (missing ones are "–")
    assert widths == ["300.0", "288.0", "300.0", "300.0", "200.0", "240.0", "300.0", "300.0"]

    quality = section(document, "quality")
    assert ["raw", "critical", "1", "1", "0"] in table_rows(quality) and ["raw", "warning", "1", "0", "1"] in (
        table_rows(quality)
    )
    assert ["events", "1,000", "990", "10", "0"] in table_rows(quality)
    assert ["events", "bad timestamp", "8"] in table_rows(quality)

    # absent sections say so
    assert "Search evaluation: not computed in this run." in section(document, "search")
    assert "Identity stitching: not computed in this run." in quality
    # hostile text never reaches the page as markup
    assert "<script>" not in document and "<img src=x" not in document and "<b>bold</b>" not in document
    assert html.escape(HOSTILE) in document


def test_search_and_identity_sections_render_once_their_rows_exist(warehouse, tmp_path, contract_tables):
    rows = [
        ("run_new", "search_text_match", "search", "searches", "mrr", 0, 0.2),
        ("run_new", "search_personalized", "search", "searches", "mrr", 0, 0.3),
        ("run_new", "search_personalized", "search", "searches", "ndcg", 10, 0.4),
        ("run_new", "search_personalized", "search", "searches", "searches", 0, 1234.0),
    ]
    execute(warehouse, EVALUATION_ROW, rows)
    contract_tables(warehouse, "identity_stitching_summary")
    execute(
        warehouse,
        """
        insert into quality.identity_stitching_summary (as_of, accounts, persons, merged_accounts, merge_rate)
        values ('2026-11-01', 10, 10, 0, 0), ('2026-12-02', 200, 180, 20, round(20::numeric / 200, 6))""",
    )
    execute(
        warehouse,
        "insert into quality.check_results (run_id, gate, suite, table_name, expectation_type, severity, success) "
        "values ('run_new', 'marts_and_recs', 'identity_stitching', 'identity', 'identity_no_shared_email_conflict',"
        " 'warning', true)",
    )
    out = tmp_path / "report.html"
    assert report(warehouse, out).returncode == 0
    document = out.read_text()
    search = section(document, "search")
    assert "MRR before (text match) 0.2000 → after (personalized) 0.3000 (+50.0%)." in search
    assert ["search_personalized", "0.3000", "0.4000", "1,234"] in table_rows(search)
    quality = section(document, "quality")
    assert "Merge rate: <strong>0.1000</strong>" in quality
    assert ["accounts", "200"] in table_rows(quality) and ["merged_accounts", "20"] in table_rows(quality)
    assert ["as_of", "2026-12-02 00:00:00+00:00"] in table_rows(quality) and ["merge_rate", "0.1000"] in (
        table_rows(quality)
    )
    assert ["identity_stitching", "identity_no_shared_email_conflict", "–", "warning", "True", "–"] in (
        table_rows(quality)
    )
    assert NOT_COMPUTED_TEXT not in search + quality


NOT_COMPUTED_TEXT = "not computed in this run"


def test_report_without_a_run_is_a_clear_error(database, tmp_path):
    result = report(database, tmp_path / "report.html")
    assert result.returncode == 2 and "run `make run` first" in result.stderr
    assert not (tmp_path / "report.html").exists()


def test_dbt_docs_without_a_run_are_built_without_compiling(database, tmp_path):
    env = {**os.environ, "WAREHOUSE_URL": database, "PYTHONPATH": PLUGINS}
    result = subprocess.run(
        [sys.executable, "-m", "recsys.cli", "docs", "--out", str(tmp_path / "docs")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "docs" / "static_index.html").exists() and (tmp_path / "docs" / "index.html").exists()
    manifest = (tmp_path / "docs" / "manifest.json").read_text()
    assert '"model.recsys.user_profiles"' in manifest and '"compiled_code"' not in manifest


def test_the_ab_section_shows_each_arm_and_the_z_test(warehouse, tmp_path):
    """10 of 100 champion impressions clicked against 20 of 100 challenger ones: pooled p = 0.15, z = 1.980,
    two-sided p = 0.0477 (by hand): the challenger's click-through is higher, significant at 0.05."""
    out = tmp_path / "report.html"
    assert report(warehouse, out).returncode == 0
    assert "No A/B test served lists yet" in section(out.read_text(), "online")
    counts = {"champion": ("popularity", 100, 10, 2), "challenger": ("item_knn", 100, 20, 5)}
    rows = [
        ("run_new", model, "online", f"arm={arm}", metric, 0, value)
        for arm, (model, shown, clicks, purchases) in counts.items()
        for metric, value in [
            ("impressions", shown),
            ("clicks", clicks),
            ("purchases", purchases),
            ("ctr", clicks / shown),
            ("conversion_rate", purchases / shown),
        ]
    ]
    execute(warehouse, "insert into recs.model_evaluations values (%s, %s, %s, %s, %s, %s, %s)", rows)
    assert report(warehouse, out).returncode == 0
    online = section(out.read_text(), "online")
    assert "the challenger's click-through is higher than the champion's" in online
    assert "p = 0.0477: significant at 0.05" in online
    table = table_rows(online)
    assert [row[:3] for row in table[1:]] == [
        ["champion", "run_new", "popularity"],
        ["challenger", "run_new", "item_knn"],
    ]
