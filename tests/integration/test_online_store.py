"""``recsys.serving.online`` against the real Redis (``RECSYS_TEST_REDIS_URL``, default db 15) and Postgres.

A throwaway database gets hand-built ``recs`` and ``analytics`` tables holding one published run with known rows
(:func:`planted_run`). Run A is pushed and every key checked; then run B is pushed while a reader thread follows
the pointer: it must only ever see complete lists of one run, A before B. Every key lives under a unique prefix,
deleted at the end. Without a reachable Redis the tests fail: the online store is part of what they check.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from datetime import UTC, datetime

import psycopg2
import pytest
from psycopg2.extras import execute_values

from recsys.orchestration import tasks
from recsys.serving import online

REDIS_URL = os.environ.get("RECSYS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
RUN_A = "run_20260301T000000"
RUN_B = "run_20260302T000000"
USERS = [f"u{number:04d}" for number in range(1_500)]
ITEMS = [f"i{number:03d}" for number in range(100)]
K = 5
GRACE = 600

#: the columns of the contract tables the test writes (the tables come from their dbt contracts)
RECS_COLUMNS = "user_id, placement, item_rank, item_id, score, model_name, reason_code, reason_text, run_id"
#: users with a buy_again list: every third (the others bought nothing yet)
BUYERS = USERS[::3]
SIMILAR_COLUMNS = "item_id, item_rank, similar_item_id, score, run_id"
PROFILE_COLUMNS = "user_id, recency_days, rfm_segment, spending_power, lifecycle_stage, top_categories"


def planted_run(run_id: str, offset: int) -> dict:
    """The rows of one published run; ``offset`` shifts every list so that two runs differ for every key.

    User ``u0000`` has a null reason and categories ``Fashion|Home``; the others have no top categories. Every
    user has a ``for_you`` and a ``discover`` list of ``K`` items, every third user a ``buy_again`` list of two.
    """
    recs = [
        (
            user,
            "for_you",
            rank + 1,
            ITEMS[(number * 7 + offset + rank) % len(ITEMS)],
            0.5**rank + offset,
            "item_knn",
            None if user == "u0000" else "similar_to_history",
            None if user == "u0000" else f"Because of {ITEMS[(number + offset) % len(ITEMS)]}",
            run_id,
        )
        for number, user in enumerate(USERS)
        for rank in range(K)
    ]
    recs += [
        (user, "discover", rank + 1, ITEMS[(number + offset + 50 + rank) % len(ITEMS)], 0.1 / (rank + 1), "als")
        + ("popular", "Popular", run_id)
        for number, user in enumerate(USERS)
        for rank in range(K)
    ]
    recs += [
        (user, "buy_again", rank + 1, ITEMS[(number + offset + rank) % len(ITEMS)], 2.0 - rank, "repeat_purchase")
        + ("buy_again", f"You bought {ITEMS[(number + offset + rank) % len(ITEMS)]} before", run_id)
        for number, user in enumerate(BUYERS)
        for rank in range(2)
    ]
    similar = [
        (item, rank + 1, ITEMS[(number + offset + rank + 1) % len(ITEMS)], 1.0 / (rank + 2), run_id)
        for number, item in enumerate(ITEMS)
        for rank in range(3)
    ]
    profiles = [
        (
            user,
            number,
            "champions" if offset else "loyal",
            "high" if number % 2 else "low",
            "active",
            "Fashion|Home" if user == "u0000" else None,
        )
        for number, user in enumerate(USERS)
    ]
    return {"run_id": run_id, "recs": recs, "similar": similar, "profiles": profiles}


def publish(url: str, run: dict) -> None:
    """Replace the warehouse's published run by ``run`` (what ``swap_recs`` leaves behind)."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("truncate recs.runs, recs.user_recommendations, recs.similar_items, analytics.user_profiles")
        cur.execute(
            "insert into recs.runs (run_id, is_published) values ('run_older', false), (%s, true)", (run["run_id"],)
        )
        execute_values(
            cur, f"insert into recs.user_recommendations ({RECS_COLUMNS}) values %s", run["recs"], page_size=5_000
        )
        execute_values(cur, f"insert into recs.similar_items ({SIMILAR_COLUMNS}) values %s", run["similar"])
        execute_values(
            cur, f"insert into analytics.user_profiles ({PROFILE_COLUMNS}) values %s", run["profiles"], page_size=5_000
        )
    conn.close()


def expected_keys(run: dict, prefix: str) -> dict[str, object]:
    """Every key the push of ``run`` must write, with its decoded value (the known answer)."""
    run_id = run["run_id"]
    expected: dict[str, object] = {}
    for user, placement, _rank, item, score, _model, code, text, _run in run["recs"]:  # already in rank order
        kind = online.placement_kind(placement)
        expected.setdefault(f"{prefix}:{run_id}:{kind}:{user}", []).append(
            {"item_id": item, "score": score, "reason_code": code, "reason_text": text}
        )
    for item, _rank, similar, score, _run in run["similar"]:
        expected.setdefault(f"{prefix}:{run_id}:similar:{item}", []).append({"item_id": similar, "score": score})
    for user, _recency, segment, power, stage, categories in run["profiles"]:
        expected[f"{prefix}:{run_id}:profile:{user}"] = {
            "rfm_segment": segment,
            "spending_power": power,
            "lifecycle_stage": stage,
            "top_categories": categories.split("|") if categories else [],
        }
    expected[f"{prefix}:{run_id}:meta"] = {
        "run_id": run_id,
        "users": len(USERS),
        "profiles": len(USERS),
        "items": len(ITEMS),
        "placements": {"for_you": len(USERS), "discover": len(USERS), "buy_again": len(BUYERS)},
    }
    return expected


@pytest.fixture
def redis_client():
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as error:
        pytest.fail(f"Redis is not reachable at {REDIS_URL} ({error}): start it or set RECSYS_TEST_REDIS_URL")
    yield client
    client.close()


@pytest.fixture
def prefix(redis_client):
    """A key prefix of this test alone; every key under it is deleted afterwards."""
    name = f"recsys_test_{uuid.uuid4().hex[:8]}"
    yield name
    keys = list(redis_client.scan_iter(match=f"{name}:*", count=1_000))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
def warehouse(database, contract_tables):
    contract_tables(database, "runs", "user_recommendations", "similar_items", "user_profiles")
    return database


def push(url: str, client, run_id: str, prefix: str) -> dict:
    conn = psycopg2.connect(url)
    try:
        return online.push_online(conn, client, run_id, prefix=prefix, grace_seconds=GRACE, batch_rows=200)
    finally:
        conn.close()


def stored(client, prefix: str) -> dict[str, object]:
    """Every JSON value under ``prefix`` (the pointer and the run set aside), decoded; a run's ``meta`` without
    its ``pushed_at`` (a time, checked to be there)."""
    keys = [key.decode() for key in client.scan_iter(match=f"{prefix}:run_*", count=1_000)]
    values = {key: json.loads(value) for key, value in zip(keys, client.mget(keys), strict=True)}
    for key in keys:
        if key.endswith(":meta"):
            datetime.fromisoformat(values[key].pop("pushed_at"))
    return values


def test_push_writes_every_key_then_flips_the_pointer_and_expires_the_previous_run(warehouse, redis_client, prefix):
    run_a, run_b = planted_run(RUN_A, 0), planted_run(RUN_B, 1)
    publish(warehouse, run_a)

    result = push(warehouse, redis_client, RUN_A, prefix)

    assert result == {
        "run_id": RUN_A,
        "previous": None,
        "recs": len(USERS),
        "recs_discover": len(USERS),
        "recs_buy_again": len(BUYERS),
        "profile": len(USERS),
        "similar": 100,
        "copied": 0,
    }
    assert redis_client.get(f"{prefix}:current") == RUN_A.encode()
    assert redis_client.smembers(f"{prefix}:runs") == {RUN_A.encode()}
    expected_a = expected_keys(run_a, prefix)
    assert stored(redis_client, prefix) == expected_a
    assert online.get_recommendations(redis_client, "u0000", prefix) == [
        {"item_id": f"i{rank:03d}", "score": 0.5**rank, "reason_code": None, "reason_text": None} for rank in range(K)
    ]
    assert online.read_current(redis_client, "profile", "u0000", prefix) == (
        RUN_A,
        {
            "rfm_segment": "loyal",
            "spending_power": "low",
            "lifecycle_stage": "active",
            "top_categories": ["Fashion", "Home"],
        },
    )
    assert online.get_recommendations(redis_client, "nobody", prefix) is None
    # one list per placement: u0003 bought, u0001 did not (no buy_again key); home is for_you
    assert online.get_recommendations(redis_client, "u0003", prefix, "buy_again") == [
        {"item_id": item, "score": 2.0 - rank, "reason_code": "buy_again", "reason_text": f"You bought {item} before"}
        for rank, item in enumerate(["i001", "i002"])
    ]
    assert online.get_recommendations(redis_client, "u0001", prefix, "buy_again") is None
    assert [item["item_id"] for item in online.get_recommendations(redis_client, "u0001", prefix, "discover")] == [
        f"i{number:03d}" for number in range(51, 51 + K)
    ]
    assert (
        online.get_recommendations(redis_client, "u0001", prefix, "home") == expected_a[f"{prefix}:{RUN_A}:recs:u0001"]
    )
    assert all(redis_client.ttl(key) == -1 for key in expected_a)

    # run B, while a reader follows the pointer: it sees A's complete lists, then B's, never anything else
    publish(warehouse, run_b)
    expected_b = expected_keys(run_b, prefix)
    lists = {
        RUN_A: {user: expected_a[f"{prefix}:{RUN_A}:recs:{user}"] for user in USERS},
        RUN_B: {user: expected_b[f"{prefix}:{RUN_B}:recs:{user}"] for user in USERS},
    }
    pushed = threading.Event()
    seen, bad = [], []

    def reader() -> None:
        number, after_push = 0, 0
        while after_push < 200:
            user = USERS[(number * 37) % len(USERS)]
            run_id, value = online.read_current(redis_client, "recs", user, prefix)
            seen.append(run_id)
            if run_id not in lists or value != lists[run_id][user]:
                bad.append((run_id, user, value))
            number += 1
            after_push += pushed.is_set()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        result = push(warehouse, redis_client, RUN_B, prefix)
    finally:
        pushed.set()
        thread.join(timeout=60)

    assert result["run_id"] == RUN_B and result["previous"] == RUN_A
    assert not bad, bad[:3]
    flip = seen.index(RUN_B)
    assert flip > 0 and set(seen[:flip]) == {RUN_A} and set(seen[flip:]) == {RUN_B}
    assert redis_client.get(f"{prefix}:current") == RUN_B.encode()
    assert redis_client.smembers(f"{prefix}:runs") == {RUN_B.encode()}
    # both runs are readable now; A's keys expire within the grace period, B's do not expire
    assert stored(redis_client, prefix) == expected_a | expected_b
    assert all(0 < redis_client.ttl(key) <= GRACE for key in expected_a)
    assert all(redis_client.ttl(key) == -1 for key in expected_b)

    # erasure: the user's lists of every placement and profiles of both runs go, nobody else's
    assert online.forget_user(redis_client, "u0000", prefix) == 8
    assert online.get_recommendations(redis_client, "u0000", prefix) is None
    assert online.get_recommendations(redis_client, "u0000", prefix, "buy_again") is None
    assert online.get_recommendations(redis_client, "u0001", prefix) == lists[RUN_B]["u0001"]


def test_push_refuses_a_run_recs_does_not_publish(warehouse, redis_client, prefix):
    publish(warehouse, planted_run(RUN_A, 0))

    with pytest.raises(online.OnlineStoreError, match="expected"):
        push(warehouse, redis_client, RUN_B, prefix)

    assert list(redis_client.scan_iter(match=f"{prefix}:*")) == []


def test_task_skips_the_online_store_without_redis_url(monkeypatch, caplog):
    monkeypatch.delenv("REDIS_URL", raising=False)

    with caplog.at_level(logging.INFO, logger="recsys.orchestration.tasks"):
        assert tasks.push_online(datetime(2026, 3, 2, tzinfo=UTC)) == {"skipped": True}

    assert "REDIS_URL not set: skipping the online store" in caplog.text


def test_an_incremental_run_copies_the_lists_it_carried_from_the_pushed_run(
    warehouse, redis_client, prefix, contract_tables
):
    """Run B re-scored 100 users and carried the others' lists from run A, which the store serves: the push copies
    those lists inside Redis and writes the re-scored ones, and the store then holds exactly B's publication. A
    list run re-run after the previous push is written again, not copied."""
    from recsys.db.runs import ML_DDL

    touched = set(USERS[:100])
    run_a, run_b = planted_run(RUN_A, 0), planted_run(RUN_B, 1)
    contract_tables(warehouse, "dim_users")
    with psycopg2.connect(warehouse) as conn, conn.cursor() as cur:
        cur.execute(ML_DDL)
        execute_values(cur, "insert into analytics.dim_users (user_id) values %s", [(user,) for user in USERS])
        cur.execute(
            "insert into ml.runs (run_id, status, finished_at) values (%s, 'recommended', now() - interval '1 hour'),"
            " (%s, 'recommended', now() - interval '1 minute')",
            (RUN_A, RUN_B),
        )
        execute_values(
            cur,
            "insert into ml.carried_lists values %s",
            [(RUN_B, user, RUN_A) for user in USERS if user not in touched],
        )
    conn.close()
    publish(warehouse, run_a)
    push(warehouse, redis_client, RUN_A, prefix)
    # B's publication: A's rows of the carried users' lists (run_id A: the run that generated them), B's of the rest
    published_b = run_b | {
        "recs": [row for row in run_a["recs"] if row[0] not in touched]
        + [row for row in run_b["recs"] if row[0] in touched]
    }
    publish(warehouse, published_b)

    result = push(warehouse, redis_client, RUN_B, prefix)

    assert result["copied"] == len(USERS) - len(touched)
    assert (result["recs"], result["recs_discover"], result["recs_buy_again"]) == (len(USERS), len(USERS), len(BUYERS))
    expected_b = expected_keys(published_b, prefix)
    assert {key: value for key, value in stored(redis_client, prefix).items() if f":{RUN_B}:" in key} == expected_b
    assert (
        online.get_recommendations(redis_client, "u0003", prefix, "buy_again")
        == expected_b[f"{prefix}:{RUN_B}:recs_buy_again:u0003"]
    )

    # A re-run after B's push: a run carrying A's lists again (C) copies none of them from B and writes them all
    run_c = "run_20260303T000000"
    with psycopg2.connect(warehouse) as conn, conn.cursor() as cur:
        cur.execute("update ml.runs set finished_at = now() + interval '1 minute' where run_id = %s", (RUN_A,))
        cur.execute("insert into ml.runs (run_id, status, finished_at) values (%s, 'recommended', now())", (run_c,))
        cur.execute("insert into ml.carried_lists select %s, user_id, list_run_id from ml.carried_lists", (run_c,))
    conn.close()
    published_c = published_b | {"run_id": run_c, "similar": [row[:-1] + (run_c,) for row in run_b["similar"]]}
    publish(warehouse, published_c)
    result = push(warehouse, redis_client, run_c, prefix)
    assert result["copied"] == 0 and result["recs"] == len(USERS)
    expected_c = expected_keys(published_c, prefix)
    assert {key: value for key, value in stored(redis_client, prefix).items() if f":{run_c}:" in key} == expected_c
