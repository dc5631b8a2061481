"""The quality gates against real Postgres and real Great Expectations (and dbt for source freshness).

Raw batches are written as landing files and loaded with the loader; the marts and ``ml`` tables of the
recs gate are made by hand.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import psycopg2
import pytest

from recsys.ingest.load import load_landing
from recsys.quality import gates, suites

BATCH = "2026-03-01"
END = datetime(2026, 3, 2, tzinfo=UTC)
RUN = "run_20260302T000000"
N_EVENTS = 400


def landing_files(directory, events_change=None):
    """A clean batch of 20 users, 10 items and 400 events; ``events_change(events)`` dirties the events."""
    rng = np.random.default_rng(0)
    users = pd.DataFrame(
        {
            "user_id": [f"U{i:03d}" for i in range(20)],
            "signup_at": "2026-01-01T00:00:00Z",
            "gender": "female",
            "region": "north",
            "birth_year": 1990,
        }
    )
    items = pd.DataFrame(
        {
            "item_id": [f"I{i:03d}" for i in range(10)],
            "name": "thing",
            "category_path": "Home > Kitchen",
            "brand": "Acme",
            "price": 9.5,
            "stock_quantity": 5,
            "created_at": "2025-12-01T00:00:00Z",
        }
    )
    # the last 66 hours before the data interval's end (END), the newest 5 hours before it: a fresh batch
    event_at = pd.Timestamp("2026-02-27", tz="UTC") + pd.to_timedelta(np.arange(N_EVENTS) * 600, unit="s")
    events = pd.DataFrame(
        {
            "event_id": [f"E{i:04d}" for i in range(N_EVENTS)],
            "user_id": users["user_id"].to_numpy()[rng.integers(0, 20, N_EVENTS)],
            "item_id": items["item_id"].to_numpy()[rng.integers(0, 10, N_EVENTS)],
            "event_type": rng.choice(["view", "cart", "purchase"], N_EVENTS),
            "event_at": event_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "session_id": "S1",
            "platform": "web",
            "quantity": 1,
            "price": 9.5,
        }
    )
    if events_change:
        events = events_change(events)
    directory.mkdir(parents=True, exist_ok=True)
    for name, frame in {"users": users, "items": items, "events": events}.items():
        frame.to_csv(directory / f"{name}.csv", index=False)
    return directory


def load_batch(url, directory):
    conn = psycopg2.connect(url)
    try:
        load_landing(conn, directory, BATCH)
    finally:
        conn.close()


def check_raw(url, freshness=False):
    conn = psycopg2.connect(url)
    try:
        return gates.check_raw(conn, url, RUN, BATCH, END, freshness=freshness)
    finally:
        conn.close()


def results(url, where="true"):
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "select run_id, batch_id, gate, suite, table_name, expectation_type, column_name, severity, success,"
            f" observed_value, unexpected_count, element_count from quality.check_results where {where}"
        )
        return pd.DataFrame(cur.fetchall(), columns=[column.name for column in cur.description])


@pytest.fixture(autouse=True)
def docs(tmp_path, monkeypatch):
    monkeypatch.setenv("RECSYS_GX_DOCS_DIR", str(tmp_path / "gx_docs"))
    return tmp_path / "gx_docs"


def test_a_clean_batch_passes_with_one_result_row_per_expectation_and_fresh_sources(database, tmp_path, docs):
    load_batch(database, landing_files(tmp_path / "landing"))

    outcome = check_raw(database, freshness=True)

    declared = suites.raw_suites(BATCH, END, ["users", "items", "events"])
    n_expectations = sum(len(suite.expectations) for suite in declared)
    stored = results(database)
    gx_rows = stored[stored["suite"] != "dbt_source_freshness"]
    assert len(gx_rows) == n_expectations and gx_rows["success"].all()
    assert set(gx_rows["suite"]) == {suite.name for suite in declared}
    assert (stored[["run_id", "batch_id", "gate"]].drop_duplicates().to_numpy() == [[RUN, BATCH, "raw"]]).all()
    # dbt source freshness of the three required sources, at the warn and the error level, all just loaded
    freshness = stored[stored["suite"] == "dbt_source_freshness"]
    assert sorted(freshness["table_name"]) == sorted(["raw.users", "raw.items", "raw.events"] * 2)
    assert set(freshness["severity"]) == {"warning", "critical"} and freshness["success"].all()
    assert outcome["failed_critical"] == 0 and outcome["failed_warnings"] == 0
    assert outcome["expectations"] == len(stored)
    # (e) the data docs are an artifact on disk
    index = docs / RUN / "raw" / "index.html"
    assert outcome["data_docs"] == str(index) and index.exists()
    assert "raw_events" in index.read_text()

    # a re-run of the same run replaces its rows
    check_raw(database)
    assert len(results(database)) == n_expectations


def test_a_snapshot_delivered_again_unchanged_passes_and_an_empty_one_fails(database, tmp_path):
    """Users and items delivered whole again store no row in the batch (all unchanged): the gate passes, and still
    fails a required file that had no rows at all."""
    conn = psycopg2.connect(database)
    try:
        earlier = landing_files(
            tmp_path / "shop" / "2026-02-28", lambda events: events.assign(event_id="X" + events["event_id"])
        )
        load_landing(conn, earlier.parent, "2026-02-28")
        load_landing(conn, landing_files(tmp_path / "shop" / BATCH).parent, BATCH)
    finally:
        conn.close()
    assert query_one(database, f"select count(*) from raw.users where _batch_id = '{BATCH}'") == 0
    assert check_raw(database)["failed_critical"] == 0

    (tmp_path / "shop" / BATCH / "users.csv").write_text("user_id,signup_at\n")
    conn = psycopg2.connect(database)
    try:
        load_landing(conn, tmp_path / "shop", BATCH)
    finally:
        conn.close()
    with pytest.raises(
        gates.QualityGateError, match=r"\[load_audit\]: expect_column_values_to_be_between\(required_rows_read\)"
    ):
        check_raw(database)


def query_one(url, statement):
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(statement)
        return cur.fetchone()[0]


def unknown_event_types(events):
    return events.assign(event_type=np.where(np.arange(len(events)) % 10 < 3, "hover", events["event_type"]))


def missing_user_ids(events):
    return events.assign(user_id=events["user_id"].where(np.arange(len(events)) % 10 >= 3))


@pytest.mark.parametrize(
    ("change", "suite", "expectation", "column"),
    [
        (unknown_event_types, "raw_events", "expect_column_values_to_be_in_set", "event_type_normalized"),
        # rows without a user id never reach raw: the loader rejects them, and the reject share fails the gate
        (missing_user_ids, "load_audit", "expect_column_values_to_be_between", "rejected_share"),
    ],
)
def test_b_a_critical_problem_fails_the_gate_naming_the_expectation(
    database, tmp_path, change, suite, expectation, column
):
    load_batch(database, landing_files(tmp_path / "landing", change))

    with pytest.raises(gates.QualityGateError) as failure:
        check_raw(database)

    message = str(failure.value)
    assert "1 critical expectation(s) failed" in message
    assert f"[{suite}]: {expectation}({column})" in message
    failed = results(database, "not success and severity = 'critical'")
    assert failed[["suite", "expectation_type", "column_name"]].to_numpy().tolist() == [[suite, expectation, column]]
    # 30% of the events: 120 of 400 rows, or 1 of the 3 files (events) over the reject share
    expected = [120, N_EVENTS] if suite == "raw_events" else [1, 3]
    assert failed[["unexpected_count", "element_count"]].to_numpy().tolist() == [expected]


def test_data_docs_show_counts_never_the_values_that_failed(database, tmp_path, docs):
    email = "alice.example@shop.test"

    def emails_as_event_types(events):
        return events.assign(event_type=np.where(np.arange(len(events)) % 10 < 3, email, events["event_type"]))

    load_batch(database, landing_files(tmp_path / "landing", emails_as_event_types))
    with pytest.raises(gates.QualityGateError):
        check_raw(database)
    pages = [path for path in (docs / RUN / "raw").rglob("*") if path.is_file()]
    (validation,) = [path for path in pages if "validations" in path.parts and "raw_events" in path.parts]
    assert "120 unexpected values found" in " ".join(validation.read_text().split())
    assert not [path for path in pages if email in path.read_text(errors="replace")]


def test_only_the_data_docs_of_the_newest_runs_are_kept(database, tmp_path, docs, monkeypatch):
    monkeypatch.setenv("RECSYS_GX_DOCS_KEEP_RUNS", "2")
    for n, name in enumerate(["run_a", "run_b", "run_c"]):
        (docs / name / "raw").mkdir(parents=True)
        os.utime(docs / name, (n, n))  # written in this order
    load_batch(database, landing_files(tmp_path / "landing"))
    check_raw(database)  # writes the docs of RUN: the newest
    assert sorted(path.name for path in docs.iterdir()) == [RUN, "run_c"]


def test_c_a_warning_only_problem_passes_and_is_recorded(database, tmp_path):
    def no_sessions(events):
        return events.assign(session_id=events["session_id"].where(np.arange(len(events)) % 5 > 0))

    load_batch(database, landing_files(tmp_path / "landing", no_sessions))

    outcome = check_raw(database)

    assert outcome["failed_critical"] == 0 and outcome["failed_warnings"] == 1
    failed = results(database, "not success")
    assert failed[["suite", "expectation_type", "column_name", "severity", "unexpected_count"]].to_numpy().tolist() == [
        ["raw_events", "expect_column_values_to_not_be_null", "session_id", "warning", N_EVENTS // 5]
    ]


def redelivered(share):
    """The first ``share`` of the events delivered twice (exact copies): both copies count as duplicated."""

    def change(events):
        return pd.concat([events, events.head(int(N_EVENTS * share / 2))], ignore_index=True)

    return change


def two_lines_of_one_item(events):
    """Every event a second time with another quantity (two invoice lines of one item): not a re-delivery."""
    return pd.concat([events, events.assign(quantity=2)], ignore_index=True)


@pytest.mark.parametrize(
    ("change", "severity", "share"),
    [(redelivered(0.05), "warning", 0.0488), (redelivered(0.25), "critical", 0.2222), (two_lines_of_one_item, None, 0)],
    ids=["5%_redelivered_warns", "25%_redelivered_fails", "invoice_lines_pass"],
)
def test_duplicated_events_are_one_linear_check_graded_by_their_share(database, tmp_path, change, severity, share):
    """10 re-delivered rows: 20 of 410 rows are copies (0.0488 > 0.01, a warning); 50 of 450 (0.2222 > 0.1) fail."""
    load_batch(database, landing_files(tmp_path / "landing", change))

    if severity == "critical":
        with pytest.raises(gates.QualityGateError, match="rows unique on"):
            check_raw(database)
    else:
        check_raw(database)

    checks = results(database, "suite = 'raw_events' and expectation_type like '%rows unique on%'")
    assert len(checks) == 1, "declared once, whatever its thresholds"
    check = checks.iloc[0]
    assert check["column_name"] == "user_id,item_id,event_type,event_at,quantity,price"
    if severity is None:
        assert check["success"]
    else:
        assert not check["success"] and check["severity"] == severity
        assert float(check["observed_value"]) == pytest.approx(share, abs=1e-4)


#: the dbt models the gate on marts and recs reads, created from their contracts (tests/conftest.py)
MART_TABLES = (
    "dim_users",
    "dim_items",
    "user_profiles",
    "user_interest_tags",
    "user_id_map",
    "identity_stitching_summary",
)
MART_ROWS = """
insert into analytics.dim_users (user_id, is_personalization_allowed) values ('u1', true), ('u2', true);
insert into analytics.dim_items (item_id, category, is_in_stock) values
    ('i1', 'Home', true), ('i2', 'Toys', true), ('i3', 'Books', true),
    ('i4', 'Home', false), ('i5', 'Home', true), ('i6', 'Home', true);
insert into analytics.user_profiles (user_id) values ('u1'), ('u2');
insert into analytics.user_interest_tags (user_id, tag, weight, tag_rank) values
    ('u1', 'category:Home', 0.75, 1), ('u1', 'brand:Acme', 0.25, 2), ('u2', 'category:Home', 1.0, 1);
insert into identity.user_id_map (user_id, shop_user_id, account_user_id) values
    ('u1', 's1', 'u1'), ('u1', 's3', 'u3'), ('u2', 's2', 'u2'), ('u4', 's4', 'u4'), ('u5', 's5', 'u5');
insert into quality.identity_stitching_summary
    (as_of, accounts, persons, merged_accounts, merge_rate, largest_person_accounts) values (now(), 5, 4, 2, 0.4, 2);
"""
#: user, item_rank, item_id, score: in stock, no item twice, scores non-increasing (ties allowed)
GOOD_RECS = [
    ("u1", 1, "i1", 0.9),
    ("u1", 2, "i2", 0.5),
    ("u1", 3, "i3", 0.5),
    ("u2", 1, "i3", 0.7),
    ("u2", 2, "i1", 0.1),
]


def make_recs_warehouse(url, recommendations, contract_tables):
    from recsys.db.runs import ML_DDL

    contract_tables(url, *MART_TABLES)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(MART_ROWS + ML_DDL)
        rows = [(RUN, user, rank, item, score) for user, rank, item, score in recommendations]
        # an earlier run's rows are not the candidate's business: a broken old run does not fail this one
        rows += [("run_20260301T000000", "u1", 1, "i4", 0.1), ("run_20260301T000000", "u1", 2, "i4", 0.9)]
        cur.executemany(
            "insert into ml.recommendations (run_id, user_id, item_rank, item_id, score, model_name, reason_code,"
            " reason_text, generated_at) values (%s, %s, %s, %s, %s, 'als', 'matrix_factorization', 'why', now())",
            rows,
        )
        cur.execute(
            "insert into ml.similar_items values (%(run)s, 'i1', 1, 'i2', 0.8), (%(run)s, 'i1', 2, 'i3', 0.2);"
            "insert into ml.cold_start_recommendations values (%(run)s, 'all', 1, 'i1', 3),"
            " (%(run)s, 'all', 2, 'i2', 1);"
            "insert into ml.promotion_targets values (%(run)s, 'P1', 'u2', 1, 0.4), (%(run)s, 'P1', 'u1', 2, 0.4)",
            {"run": RUN},
        )


def check_recs(url):
    conn = psycopg2.connect(url)
    try:
        return gates.check_marts_and_recs(conn, url, RUN)
    finally:
        conn.close()


def test_d_the_recs_gate_passes_a_good_candidate_run(database, docs, contract_tables):
    make_recs_warehouse(database, GOOD_RECS, contract_tables)

    outcome = check_recs(database)

    stored = results(database)
    declared = suites.marts_and_recs_suites(RUN) + suites.identity_suites()
    n_expectations = sum(len(suite.expectations) for suite in declared)
    assert len(stored) == n_expectations and stored["success"].all()
    assert set(stored["gate"]) == {"marts_and_recs"} and stored["batch_id"].isna().all()
    assert outcome["failed_critical"] == 0 and (docs / RUN / "marts_and_recs" / "index.html").exists()


def test_d_the_recs_gate_checks_the_lists_the_run_generated_not_those_it_carried(database, contract_tables):
    """An incremental run's carried lists (ml.carried_lists: rows an earlier run generated) passed that run's
    gate: an out-of-stock item in them does not fail this one; the same rows generated by the run do. A user
    with neither a generated list nor a carried one whose run still holds its lists is a warning."""
    make_recs_warehouse(database, [rec for rec in GOOD_RECS if rec[0] == "u2"], contract_tables)
    assert check_recs(database)["failed_warnings"] == 1  # u1 has no list at all
    (warned,) = results(database, "not success")["expectation_type"]
    assert "every user of analytics.dim_users has a for_you list" in warned
    with psycopg2.connect(database) as conn, conn.cursor() as cur:  # carried from a run with no lists (pruned)
        cur.execute("insert into ml.carried_lists values (%s, 'u1', 'run_20260201T000000')", (RUN,))
    assert check_recs(database)["failed_warnings"] == 1
    with psycopg2.connect(database) as conn, conn.cursor() as cur:  # u1 keeps the earlier run's list (i4)
        cur.execute("update ml.carried_lists set list_run_id = 'run_20260301T000000' where user_id = 'u1'")
    outcome = check_recs(database)
    assert (outcome["failed_critical"], outcome["failed_warnings"]) == (0, 0)
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute(
            "insert into ml.recommendations select %s, user_id, placement, item_rank, item_id, score, model_name,"
            " reason_code, reason_text, generated_at from ml.recommendations where run_id = 'run_20260301T000000'",
            (RUN,),
        )
    with pytest.raises(gates.QualityGateError, match="every item_id exists in analytics.dim_items and is in stock"):
        check_recs(database)


@pytest.mark.parametrize(
    ("target", "expectation"),
    [
        (("optout", 3, 0.1), "every target is a user of analytics.dim_users who allows personalization: observed 1"),
        (("stranger", 3, 0.1), "every target is a user of analytics.dim_users who allows personalization: observed 1"),
        (("u9", 3, 0.5), "propensity does not increase with target_rank: observed 1"),
    ],
    ids=["opted_out", "unknown_user", "propensity_increases"],
)
def test_d_the_recs_gate_fails_bad_promotion_targets(database, target, expectation, contract_tables):
    make_recs_warehouse(database, GOOD_RECS, contract_tables)
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute(
            "insert into analytics.dim_users (user_id, is_personalization_allowed)"
            " values ('u9', true), ('optout', false)"
        )
        cur.execute("insert into ml.promotion_targets values (%s, 'P1', %s, %s, %s)", (RUN, *target))

    with pytest.raises(gates.QualityGateError, match="quality gate 'marts_and_recs' failed") as failure:
        check_recs(database)

    assert f"ml.promotion_targets [ml_promotion_targets]: unexpected_row_count_expectation: {expectation}" in str(
        failure.value
    )


@pytest.mark.parametrize(
    ("recommendations", "expectation"),
    [
        (
            [*GOOD_RECS[:4], ("u2", 2, "i3", 0.1)],
            # u2 gets i3 twice: 2 of the 5 rows share (user_id, item_id)
            "ml.recommendations [ml_recommendations]: unexpected_row_count_expectation: rows unique on (user_id,"
            " placement, item_id): duplicated share at most 0.0(user_id,placement,item_id): unexpected 2 of 5",
        ),
        (
            [*GOOD_RECS[:4], ("u2", 2, "i4", 0.1)],
            "ml.recommendations [ml_recommendations]: unexpected_row_count_expectation: every item_id exists in"
            " analytics.dim_items and is in stock: observed 1",
        ),
        (
            [*GOOD_RECS[:4], ("u2", 2, "i1", 0.8)],
            "ml.recommendations [ml_recommendations]: unexpected_row_count_expectation: scores do not increase with"
            " item_rank: observed 1",
        ),
        (
            [*GOOD_RECS, *[("u2", rank, f"x{rank}", 0.0) for rank in range(3, 23)]],
            "unexpected_row_count_expectation: at most 20 items per user and placement: observed 1",
        ),
        (
            [*GOOD_RECS, ("u2", 21, "i2", 0.05)],
            "ml.recommendations [ml_recommendations]: unexpected_row_count_expectation: item_rank between 1 and 20:"
            " observed 1",
        ),
        (
            # u1: Home, Home, Home: 0 of 3 pairs differ; u2: Home, Home: 0 of 1; mean 0 < 0.2 of business_rules.toml
            [
                ("u1", 1, "i1", 0.9),
                ("u1", 2, "i5", 0.5),
                ("u1", 3, "i6", 0.4),
                ("u2", 1, "i5", 0.7),
                ("u2", 2, "i6", 0.1),
            ],
            "unexpected_row_count_expectation: mean intra-list diversity of the top 10 is at least 0.2",
        ),
    ],
    ids=["duplicate_item", "out_of_stock", "scores_increase", "more_than_20", "rank_past_20", "not_diverse"],
)
def test_d_the_recs_gate_fails_a_bad_candidate_run(database, recommendations, expectation, contract_tables):
    make_recs_warehouse(database, recommendations, contract_tables)

    with pytest.raises(gates.QualityGateError, match="quality gate 'marts_and_recs' failed") as failure:
        check_recs(database)

    assert expectation in str(failure.value)
    failed = results(database, "not success and severity = 'critical'")
    assert (failed["table_name"] == "ml.recommendations").all() and len(failed) >= 1


def test_stale_sources_warn_after_26_hours_and_fail_the_gate_after_50(database, tmp_path):
    load_batch(database, landing_files(tmp_path / "landing"))

    def age_loads(hours: int) -> None:
        with psycopg2.connect(database) as conn, conn.cursor() as cur:
            for table in ("users", "items", "events"):
                cur.execute(f"update raw.{table} set _loaded_at = now() - interval '{hours} hours'")

    age_loads(30)
    outcome = check_raw(database, freshness=True)
    assert outcome["failed_warnings"] == 3
    stale = results(database, "not success")
    assert set(stale["suite"]) == {"dbt_source_freshness"} and set(stale["severity"]) == {"warning"}

    age_loads(60)
    with pytest.raises(gates.QualityGateError, match=r"3 critical expectation\(s\) failed") as failure:
        check_raw(database, freshness=True)
    assert "raw.events [dbt_source_freshness]: dbt_source_freshness(_loaded_at)" in str(failure.value)
    assert '"status": "error"' in str(failure.value)


def older_by(hours):
    def change(events):
        shifted = pd.to_datetime(events["event_at"]) - pd.Timedelta(hours=hours)
        return events.assign(event_at=shifted.dt.strftime("%Y-%m-%dT%H:%M:%SZ"))

    return change


def test_a_batch_of_old_events_is_stale_on_event_time(database, tmp_path):
    """Freshness on event time: the newest event 27 h before the interval's end warns, 51 h fails."""
    load_batch(database, landing_files(tmp_path / "landing", older_by(22)))  # newest event 5 + 22 = 27 h old
    assert check_raw(database)["failed_warnings"] == 1
    stale = results(database, "not success")
    assert stale[["expectation_type", "column_name", "severity"]].to_numpy().tolist() == [
        ["expect_column_max_to_be_between", "event_at", "warning"]
    ]
    load_batch(database, landing_files(tmp_path / "landing", older_by(46)))  # 51 h old: a feed that stopped
    with pytest.raises(gates.QualityGateError, match=r"expect_column_max_to_be_between\(event_at\)"):
        check_raw(database)


def test_the_airflow_task_fails_without_retries_on_a_critical_failure(database, monkeypatch, contract_tables):
    from airflow.sdk.exceptions import AirflowFailException

    from recsys.orchestration import tasks

    make_recs_warehouse(database, [*GOOD_RECS[:4], ("u2", 2, "i4", 0.1)], contract_tables)
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", database)

    with pytest.raises(AirflowFailException, match="is in stock"):
        tasks.check_marts_and_recs(END)


def test_an_invoice_export_passes_the_raw_gate(database, tmp_path):
    """Wholesale quantities, two lines of one item on an invoice, no sessions or platforms: no critical failure."""
    from recsys.dev.simulate_invoices import simulate_invoices

    shop = tmp_path / "invoices"
    simulate_invoices(shop, customers=200, products=150, days=60, seed=5)
    conn = psycopg2.connect(database)
    try:
        load_landing(conn, shop, BATCH)
        outcome = gates.check_raw(conn, database, RUN, BATCH, datetime(2011, 12, 10, tzinfo=UTC), freshness=False)
    finally:
        conn.close()
    assert outcome["failed_critical"] == 0
    quantity = results(database, "suite = 'raw_events' and column_name = 'quantity'").iloc[0]
    assert quantity["success"], "quantities in the thousands are plausible"
