"""Cross-platform identity stitching on real Postgres and real dbt.

A hand-computed case (a chain of links, an over-shared device, an attribute
conflict) and the simulated shop, whose planted persons (``truth/persons.csv``)
the stitching must recover; then erasure of one account of a merged person.
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
from recsys.dev.simulate import simulate
from recsys.ingest import landing, load
from recsys.quality import erasure, gates, suites

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
#: the models identity stitching feeds, with everything they need
MODELS = ["+identity_stitching_summary", "+user_id_map", "+staging_reconciliation", "+dim_users"]

# A-B share an e-mail (written differently), B-C a device: one person. D-E share a phone but disagree on
# the birth year: one person, an attribute conflict. S1..S6 share a tablet (6 accounts > 5): nobody is linked.
USERS = "user_id,signup_at,birth_year,gender,platform,email,phone\n" + "\n".join(
    [
        "A,2026-01-01T00:00:00Z,1990,female,web,ann@example.com,",
        "B,2026-02-01T00:00:00Z,1990,,app, ANN@Example.com ,",
        "C,2026-03-01T00:00:00Z,,female,mini_program,c@example.com,",
        "D,2026-01-01T00:00:00Z,1980,male,web,d@example.com,+86 138-0000-0001",
        "E,2026-01-05T00:00:00Z,1981,male,app,e@example.com,86 138 0000 0001",
        *[f"S{n},2026-01-01T00:00:00Z,1970,male,web,s{n}@example.com," for n in range(1, 7)],
    ]
)
EVENTS = "user_id,item_id,event_type,event_at,platform,device_id\n" + "\n".join(
    [
        "A,I1,view,2026-10-01T00:00:00Z,web,browser-a",
        "B,I1,view,2026-10-02T00:00:00Z,app,phone-1",
        "C,I2,view,2026-10-03T00:00:00Z,mini_program, phone-1 ",
        "D,I2,view,2026-10-03T00:00:00Z,web,",
        *[f"S{n},I1,view,2026-10-04T00:00:00Z,app,tablet" for n in range(1, 7)],
    ]
)
ITEMS = "item_id,price,stock_quantity\nI1,10,5\nI2,20,5\n"


def dbt(env: dict[str, str], *args: str) -> None:
    result = subprocess.run(
        [str(BIN / "dbt"), *args, "--project-dir", str(REPO_ROOT / "dbt_project"), "--target-path", env["TARGET"]],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-5000:]


def build(url: str, landing_dir, tmp_path_factory, *select: str) -> dict[str, str]:
    """Load the landing directory; ``dbt run`` the ``select``ed models, or ``dbt build`` the DAG's transform."""
    env = environment(url, airflow_home=tmp_path_factory.mktemp("airflow"))
    env["TARGET"] = str(tmp_path_factory.mktemp("dbt_target"))
    with connect(url) as conn:
        load.load_landing(conn, landing_dir, "b1")
    command = ["run", "--select", *select] if select else ["build"]
    dbt(env, *command, "--exclude", "tag:publish", "--vars", json.dumps({"as_of": AS_OF.isoformat()}))
    return env


def frame(url: str, sql: str, params: tuple = ()) -> pd.DataFrame:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql, params or None)
        return pd.DataFrame(cur.fetchall(), columns=[column.name for column in cur.description])


@pytest.fixture(scope="module")
def hand_made(fresh_database, tmp_path_factory):
    directory = tmp_path_factory.mktemp("identity_landing")
    for name, text in (("users.csv", USERS), ("items.csv", ITEMS), ("events.csv", EVENTS)):
        (directory / name).write_text(text + "\n")
    url = fresh_database()
    build(url, directory, tmp_path_factory, *MODELS)
    return url


def test_a_chain_of_links_is_one_person_and_an_over_shared_device_links_nobody(hand_made):
    persons = frame(hand_made, "select shop_user_id, user_id from identity.user_id_map order by shop_user_id")
    person_of = dict(zip(persons["shop_user_id"], persons["user_id"], strict=True))
    key = {name: erasure.user_key(name) for name in person_of}
    assert person_of["A"] == person_of["B"] == person_of["C"] == min(key["A"], key["B"], key["C"])
    assert person_of["D"] == person_of["E"] == min(key["D"], key["E"])
    assert person_of["D"] != person_of["A"]
    assert all(person_of[f"S{n}"] == key[f"S{n}"] for n in range(1, 7))  # each alone

    summary = frame(hand_made, "select * from quality.identity_stitching_summary").iloc[0]
    assert (summary["accounts"], summary["persons"], summary["merged_accounts"], summary["merged_persons"]) == (
        11,
        8,
        5,
        2,
    )
    assert float(summary["merge_rate"]) == pytest.approx(5 / 11, abs=1e-6)
    assert (summary["over_shared_keys"], summary["over_shared_devices"], summary["accounts_on_over_shared_keys"]) == (
        1,
        1,
        6,
    )
    assert (summary["attribute_conflicts"], summary["birth_year_conflicts"], summary["gender_conflicts"]) == (1, 1, 0)
    assert summary["largest_person_accounts"] == 3


def test_a_person_has_one_profile_built_from_all_their_accounts(hand_made):
    users = frame(hand_made, "select * from staging.stg_shop__users").set_index("user_id")
    abc = users.loc[min(erasure.user_key(name) for name in "ABC")]
    assert abc["account_count"] == 3 and abc["signup_at"] == pd.Timestamp("2026-01-01", tz="UTC")
    assert (abc["birth_year"], abc["gender"], abc["platform"]) == (1990, "female", "web")  # A signed up first
    de = users.loc[min(erasure.user_key("D"), erasure.user_key("E"))]
    assert de["account_count"] == 2 and pd.isna(de["birth_year"]) and de["gender"] == "male"  # 1980 vs 1981
    assert users["account_count"].sum() == 11 and len(users) == 8
    events = frame(hand_made, "select user_id, count(*) as n from staging.stg_shop__events group by 1")
    assert dict(zip(events["user_id"], events["n"], strict=True))[abc.name] == 3
    reconciled = frame(hand_made, "select * from quality.staging_reconciliation where source_table = 'users'")
    assert reconciled["is_reconciled"].all() and reconciled["staged_rows"].iloc[0] == 11


def test_erasing_one_account_erases_the_whole_person(hand_made):
    keys = {erasure.user_key(name) for name in "ABC"}
    quarantined = [
        '{"user_id":"B","item_id":"I1","event_at":"bad"}',  # B's row: erased with the person
        "C,I2,view,bad,app,extra,field",  # a raw line of C's: erased
        '{"user_id":"D","item_id":"C","event_at":"bad"}',  # D's row with an item "C": kept (was deleted)
        "D,C,view,bad,app,extra,field",  # a raw line's columns cannot be told apart: a field "C" erases it
        '{"user_id":"D","item_id":"I1","price":"CC"}',  # "C" inside another value: kept
    ]
    with connect(hand_made) as conn, conn.cursor() as cur:
        cur.executemany(
            "insert into quality.rejected_rows values ('b2', 'events', 'events.csv', 2, 'bad', %s)",
            [(record,) for record in quarantined],
        )
        conn.commit()
    with connect(hand_made) as conn:
        assert erasure.person_keys(conn, " C ") == sorted(keys)  # what the online store forgets
        result = erasure.erase_user(conn, "C")
    with connect(hand_made) as conn:
        # the online store's keys of the whole person were recorded with the erasure; a retry (the store was
        # down, the task crashed) finds them although the identity map no longer knows A and B
        assert erasure.pending_online_keys(conn) == sorted(keys)
        erasure.erase_user(conn, "C")
        assert erasure.pending_online_keys(conn) == sorted(keys)
        erasure.online_keys_forgotten(conn, sorted(keys))
        assert erasure.pending_online_keys(conn) == []
    left = frame(hand_made, "select raw_record from quality.rejected_rows where batch_id = 'b2'")["raw_record"]
    assert left.tolist() == [quarantined[2], quarantined[4]]
    assert result["accounts"] == 3
    assert frame(hand_made, "select shop_user_id from identity.user_id_map order by 1")["shop_user_id"].tolist() == [
        "D",
        "E",
        *[f"S{n}" for n in range(1, 7)],
    ]
    assert frame(hand_made, "select count(*) as n from raw.users where trim(user_id) in ('A', 'B', 'C')")["n"][0] == 0
    assert set(frame(hand_made, "select user_key from quality.erased_users")["user_key"]) == keys
    left = frame(
        hand_made,
        "select count(*) as n from identity.identity_account_keys where account_user_id = any(%s)",
        (list(keys),),
    )
    assert left["n"][0] == 0


@pytest.fixture(scope="module")
def simulated(fresh_database, tmp_path_factory):
    """A simulated shop with planted second accounts, loaded and built as the DAG's transform (with dbt's tests)."""
    shop = tmp_path_factory.mktemp("identity_shop")
    simulate(shop, users=3_000, items=300, days=45, seed=3)
    url = fresh_database()
    build(url, shop, tmp_path_factory)
    return url, shop


def pairs(sizes: pd.Series) -> int:
    return int((sizes * (sizes - 1) // 2).sum())


def test_stitched_persons_recover_the_planted_ones(simulated):
    url, shop = simulated
    planted = pd.read_csv(shop / landing.PERSONS_TRUTH_FILE, dtype=str)
    found = frame(url, "select shop_user_id as user_id, user_id as found_person from identity.user_id_map")
    both = planted.merge(found, on="user_id", how="inner")
    assert len(both) == len(found) > 0.99 * len(planted)  # every account built is planted; a few are invalid
    planted_pairs = pairs(both.groupby("person_id").size())
    found_pairs = pairs(both.groupby("found_person").size())
    true_pairs = pairs(both.groupby(["person_id", "found_person"]).size())
    precision, recall = true_pairs / found_pairs, true_pairs / planted_pairs
    print(f"planted pairs {planted_pairs}, found {found_pairs}, precision {precision:.3f}, recall {recall:.3f}")
    assert planted_pairs > 80
    assert recall > 0.97 and precision > 0.9  # the simulator's e-mails collide for a few different people
    by_link = both[both["link"] != "self"].merge(
        both[["user_id", "found_person"]], left_on="person_id", right_on="user_id", suffixes=("", "_first")
    )
    for link in ("email", "device"):
        linked = by_link[by_link["link"] == link]
        assert (linked["found_person"] == linked["found_person_first"]).mean() > 0.97, link


def test_the_summary_reconciles_and_the_shared_devices_are_reported(simulated):
    url, shop = simulated
    summary = frame(url, "select * from quality.identity_stitching_summary")
    assert len(summary) == 1
    summary = summary.iloc[0]
    users = frame(url, "select account_count from staging.stg_shop__users")
    assert summary["accounts"] == users["account_count"].sum() == len(frame(url, "select * from identity.user_id_map"))
    assert summary["persons"] == len(users)
    assert summary["merged_accounts"] == users.loc[users["account_count"] > 1, "account_count"].sum()
    events = pd.read_csv(shop / "events.csv", dtype=str, on_bad_lines="skip", keep_default_na=False)
    shared = events.loc[events["device_id"].str.startswith("SHARED-"), "device_id"].nunique()
    assert summary["over_shared_devices"] == shared >= 3
    assert 0.03 < float(summary["merge_rate"]) < 0.15
    assert summary["largest_person_accounts"] <= 3


def test_the_marts_gate_records_identity_checks(simulated, tmp_path, monkeypatch):
    url, _ = simulated
    monkeypatch.setenv("RECSYS_GX_DOCS_DIR", str(tmp_path))
    rows = gates.validate(url, suites.identity_suites(), tmp_path)
    by_suite = {row["suite"]: row for row in rows}
    assert set(by_suite) == {"identity_merge_rate", "identity_accounts_reconcile", "identity_person_size"}
    assert [row for row in rows if not row["success"]] == []
    assert by_suite["identity_accounts_reconcile"]["severity"] == "critical"
    assert by_suite["identity_merge_rate"]["severity"] == "warning"

    # a summary that no longer reconciles with identity.user_id_map fails the gate
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("update quality.identity_stitching_summary set accounts = accounts + 1")
    rows = gates.validate(url, suites.identity_suites(), tmp_path)
    assert [row["suite"] for row in rows if not row["success"]] == ["identity_accounts_reconcile"]


def test_the_batch_that_arrived_last_wins_whatever_its_id(fresh_database, tmp_path_factory):
    """An opt-out delivered as batch 2024-06-01 after a batch called initial-load is the user's latest version."""
    url = fresh_database()
    root = tmp_path_factory.mktemp("batches")
    for batch, allowed, day in (("initial-load", "true", "01"), ("2024-06-01", "false", "02")):
        (root / batch).mkdir()
        users = f"user_id,signup_at,is_personalization_allowed\nA,2026-01-01T00:00:00Z,{allowed}\n"
        (root / batch / "users.csv").write_text(users)
        (root / batch / "items.csv").write_text(ITEMS)
        (root / batch / "events.csv").write_text(
            f"user_id,item_id,event_type,event_at\nA,I1,view,2026-10-{day}T00:00:00Z\n"
        )
        with connect(url) as conn:
            load.load_landing(conn, root, batch)
    env = environment(url, airflow_home=tmp_path_factory.mktemp("airflow"))
    env["TARGET"] = str(tmp_path_factory.mktemp("dbt_target"))
    dbt(env, "run", "--select", "base_shop__users", "--vars", json.dumps({"as_of": AS_OF.isoformat()}))
    latest = frame(
        url, "select batch_id, is_personalization_allowed from staging.base_shop__users where not is_duplicate"
    )
    assert latest.to_dict("records") == [{"batch_id": "2024-06-01", "is_personalization_allowed": False}]
