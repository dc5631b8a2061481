"""Social data on real Postgres and real dbt: the bad-input rules of ``social_edges``, the follows and profiles.

A hand-made shop: four users (D opted out of personalization), two items, orders, and fourteen edge rows of
which five are good, one repeats a good edge, one does not parse and seven break a rule, each with its own
reason. Counts reconcile in the loader (read = loaded + rejected) and in staging (raw = staged + excluded +
duplicates).
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime

import pandas as pd
import psycopg2
import pytest

from recsys.db.warehouse import REPO_ROOT, connect
from recsys.dev.local import BIN, environment
from recsys.ingest import load
from recsys.quality import erasure

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
USERS = """user_id,signup_at,is_personalization_allowed
A,2026-01-01T00:00:00Z,true
B,2026-01-01T00:00:00Z,true
C,2026-01-01T00:00:00Z,true
D,2026-09-01T00:00:00Z,false
"""
ITEMS = "item_id,category_path,price,stock_quantity\nI1,Home > Kettles,10,5\nI2,Toys > Blocks,20,5\n"
EVENTS = """user_id,item_id,event_type,event_at
B,I1,purchase,2026-10-01T00:00:00Z
B,I1,purchase,2026-10-02T00:00:00Z
C,I2,purchase,2026-10-03T00:00:00Z
"""
ORDERS = (
    "order_id,user_id,ordered_at\nO1,B,2026-10-01T00:00:00Z\nO2,B,2026-10-02T00:00:00Z\nO3,C,2026-10-03T00:00:00Z\n"
)
ORDER_LINES = "order_id,item_id,quantity,unit_price\nO1,I1,1,10\nO2,I1,1,10\nO3,I2,1,20\n"
#: (row, what happens to it)
EDGES = [
    ("A,B,follow,2026-10-01T00:00:00Z,", "staged"),
    ("B,C,friend,2026-10-01T00:00:00Z,", "staged"),
    ("A,C, Follow ,2026-10-02T00:00:00Z,", "staged"),
    ("A,B,share,2026-10-05T00:00:00Z,I1", "staged"),
    ("C,D,referral,2026-09-01T00:00:00Z,", "staged"),
    ("A,B,follow,2026-10-03T00:00:00Z,", "duplicate"),
    ("A,B,like,2026-10-01T00:00:00Z,", "unknown_kind"),
    ("A,A,follow,2026-10-01T00:00:00Z,", "self_edge"),
    ("A,Z,follow,2026-10-01T00:00:00Z,", "unknown_to_user"),
    ("Z,A,follow,2026-10-01T00:00:00Z,", "unknown_from_user"),
    ("A,B,share,2026-10-01T00:00:00Z,", "missing_item_id"),
    ("A,B,share,2026-10-01T00:00:00Z,I9", "unknown_item"),
    ("A,C,friend,2026-11-02T00:00:00Z,", "created_after_as_of"),
    ("A,B,,2026-10-01T00:00:00Z,", "rejected by the loader"),
]


#: the social models, whose data and unit tests run here
SOCIAL_MODELS = [
    "base_shop__social_edges",
    "stg_shop__social_edges",
    "fct_social_edges",
    "user_follows",
    "user_followed_categories",
    "user_social",
    "user_profiles",
    "staging_reconciliation",
]


def dbt(env: dict[str, str], *args: str) -> None:
    result = subprocess.run(
        [str(BIN / "dbt"), *args, "--project-dir", str(REPO_ROOT / "dbt_project"), "--target-path", env["TARGET"]],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-5000:]


def frame(url: str, sql: str) -> pd.DataFrame:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return pd.DataFrame(cur.fetchall(), columns=[column.name for column in cur.description])


@pytest.fixture(scope="module")
def social(fresh_database, tmp_path_factory):
    url = fresh_database()
    landing_dir = tmp_path_factory.mktemp("social")
    files = {"users": USERS, "items": ITEMS, "events": EVENTS, "orders": ORDERS, "order_lines": ORDER_LINES}
    files["social_edges"] = "from_user_id,to_user_id,kind,created_at,item_id\n" + "".join(
        row + "\n" for row, _ in EDGES
    )
    for name, text in files.items():
        (landing_dir / f"{name}.csv").write_text(text)
    env = environment(url, airflow_home=tmp_path_factory.mktemp("airflow"))
    env["TARGET"] = str(tmp_path_factory.mktemp("dbt_target"))
    with connect(url) as conn:
        audits = load.load_landing(conn, landing_dir, "b1")
    as_of = ["--vars", json.dumps({"as_of": AS_OF.isoformat()})]
    dbt(env, "run", "--select", *(f"+{model}" for model in SOCIAL_MODELS), "excluded_rows", "user_id_map", *as_of)
    dbt(env, "test", "--select", *SOCIAL_MODELS, *as_of)
    return url, {audit["table_name"]: audit for audit in audits}


def test_bad_edges_are_quarantined_with_their_reason_and_counts_reconcile(social):
    """7 excluded rows with 7 reasons, 1 duplicate, 5 staged; the loader read 14, loaded 13, rejected 1."""
    url, audits = social
    assert (audits["social_edges"]["rows_read"], audits["social_edges"]["rows_rejected"]) == (14, 1)
    rejected = frame(url, "select reason from quality.rejected_rows where table_name = 'social_edges'")
    assert rejected["reason"].tolist() == ["missing required value: kind"]
    excluded = frame(url, "select exclusion_reason from quality.excluded_rows where source_table = 'social_edges'")
    expected = sorted(fate for _, fate in EDGES if fate not in ("staged", "duplicate", "rejected by the loader"))
    assert sorted(excluded["exclusion_reason"]) == expected
    counts = frame(url, "select * from quality.staging_reconciliation where source_table = 'social_edges'").iloc[0]
    assert (counts["raw_rows"], counts["staged_rows"], counts["excluded_rows"], counts["duplicate_rows"]) == (
        13,
        5,
        7,
        1,
    )
    assert counts["is_reconciled"]
    facts = frame(url, "select kind, item_id from analytics.fct_social_edges order by kind")
    assert facts["kind"].tolist() == ["follow", "follow", "friend", "referral", "share"]
    assert facts["item_id"].fillna("").tolist() == ["", "", "", "", "I1"]


def test_follows_and_profile_columns(social):
    """A follows B and C; B and C are friends; D follows C, who referred them; A's followed buy Home 2, Toys 1."""
    url, _ = social
    ids = frame(url, "select shop_user_id, user_id from identity.user_id_map")
    name = dict(zip(ids["user_id"], ids["shop_user_id"], strict=True))
    follows = frame(url, "select user_id, followed_user_id, is_following, is_referrer from analytics.user_follows")
    pairs = {
        (name[row.user_id], name[row.followed_user_id], row.is_following, row.is_referrer)
        for row in follows.itertuples()
    }
    assert pairs == {
        ("A", "B", True, False),
        ("A", "C", True, False),
        ("B", "C", True, False),
        ("C", "B", True, False),
        ("D", "C", False, True),
    }
    profiles = frame(
        url,
        "select user_id, follower_count, following_count, has_referrer, followed_top_categories"
        " from analytics.user_profiles",
    )
    profiles["user_id"] = profiles["user_id"].map(name)
    got = profiles.set_index("user_id").sort_index()
    assert got["follower_count"].tolist() == [0, 2, 2, 0]
    assert got["following_count"].tolist() == [2, 1, 1, 0]
    assert got["has_referrer"].tolist() == [False, False, False, True]
    # D opted out: no profile from the people they follow; B follows C (Toys), C follows B (Home)
    assert got["followed_top_categories"].fillna("").tolist() == ["Home|Toys", "Toys", "Home", ""]
    shares = frame(url, "select user_id, category, purchase_share from analytics.user_followed_categories")
    shares["user_id"] = shares["user_id"].map(name)
    of_a = shares[shares["user_id"] == "A"].set_index("category")["purchase_share"]
    assert of_a.to_dict() == pytest.approx({"Home": 2 / 3, "Toys": 1 / 3})


def test_erasing_a_person_erases_every_edge_that_names_them(social):
    """B is at one end of 7 of the 13 loaded edge rows (staged, duplicate and excluded ones) and of the row the
    loader quarantined: after the erasure no raw, staging, quality or analytics row names B at either end, and
    A's follow of C stays."""
    url, _ = social
    ids = frame(url, "select shop_user_id, user_id from identity.user_id_map")
    key_of = dict(zip(ids["shop_user_id"], ids["user_id"], strict=True))
    with connect(url) as conn:
        erasure.erase_user(conn, "B")
    raw = frame(url, "select from_user_id, to_user_id from raw.social_edges")
    assert "B" not in set(raw["from_user_id"].str.strip()) | set(raw["to_user_id"].str.strip())
    for table in ("staging.base_shop__social_edges", "analytics.fct_social_edges"):
        rows = frame(url, f"select from_user_id, to_user_id from {table}")
        assert key_of["B"] not in set(rows["from_user_id"]) | set(rows["to_user_id"]), table
        assert (key_of["A"], key_of["C"]) in set(zip(rows["from_user_id"], rows["to_user_id"], strict=True)), table
    follows = frame(url, "select user_id, followed_user_id from analytics.user_follows")
    assert key_of["B"] not in set(follows["user_id"]) | set(follows["followed_user_id"])
    # the row the loader quarantined (no kind) named B as its to_user_id: gone too
    quarantined = frame(url, "select raw_record from quality.rejected_rows where table_name = 'social_edges'")
    assert quarantined.empty
