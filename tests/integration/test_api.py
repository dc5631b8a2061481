"""The serving API against a real Postgres (and Redis) holding a small published run with known lists.

Shopper A has the published list i1..i4 (placement for_you), the discover list i5, i6, i4 (never bought) and the
buy_again list i2 (bought before); anyone else gets the cold-start list i9, i8. Items i1 and i3 are Home, i2
and i6 Grocery (the run's repeat-purchase category), i4 Toys; i5 is similar to i3.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import uuid

import psycopg2
import pytest
import redis
from fastapi.testclient import TestClient

from recsys.api.app import Settings, create_app
from recsys.api.events import Event, Sessions, Spool, drain
from recsys.api.store import Store
from recsys.db import keystore
from recsys.ingest.load import load_landing
from recsys.quality.erasure import erase_user
from recsys.serving import online, publish

TOKEN = "test-token-not-a-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RUN = "run_20261101T000000"
KEY = "test-api-pseudonymization-key-not-a-secret-0123456789"
REDIS_URL = os.environ.get("RECSYS_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
#: the run's champion per placement (recs.runs.placement_champions)
CHAMPIONS = {
    name: {"model": model, "reason": "planted"} for name, model in [("for_you", "als"), ("discover", "item_knn")]
}


@pytest.fixture
def warehouse(database, contract_tables):
    contract_tables(database, "user_id_map", "dim_items", "user_profiles")
    contract_tables(database, *publish.RECS_TABLES, schema=publish.BUILD_SCHEMA)
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute(
            """
            insert into identity.user_id_map (user_id, shop_user_id, account_user_id) values ('pA', 'A', 'pA');
            insert into analytics.dim_items (item_id, category) values
                ('i1', 'Home'), ('i2', 'Grocery'), ('i3', 'Home'), ('i4', 'Toys'), ('i5', 'Home'), ('i6', 'Grocery');
            insert into recs_build.runs (run_id, is_published, repeat_purchase_categories, champion_model,
                placement_champions)
                values (%(run)s, true, 'Grocery', 'als', %(champions)s);
            insert into recs_build.user_recommendations (user_id, placement, item_rank, item_id, score,
                reason_code, reason_text, run_id)
                select 'pA', 'for_you', rank, 'i' || rank, 1.0 / rank, 'popular', 'Popular', %(run)s
                from generate_series(1, 4) as rank
                union all
                values ('pA', 'discover', 1, 'i5', 0.6, 'similar_items', 'Similar', %(run)s),
                    ('pA', 'discover', 2, 'i6', 0.4, 'popular', 'Popular', %(run)s),
                    ('pA', 'discover', 3, 'i4', 0.3, 'popular', 'Popular', %(run)s),
                    ('pA', 'buy_again', 1, 'i2', 2.0, 'buy_again', 'You bought i2 before', %(run)s);
            insert into recs_build.similar_items (item_id, item_rank, similar_item_id, score, run_id)
                values ('i5', 1, 'i3', 0.9, %(run)s), ('i1', 1, 'i2', 0.5, %(run)s);
            insert into recs_build.cold_start_recommendations (segment_key, item_rank, item_id, score, run_id)
                values ('all', 1, 'i9', 0.8, %(run)s), ('all', 2, 'i8', 0.7, %(run)s);
            """,
            {"run": RUN, "champions": json.dumps(CHAMPIONS)},
        )
    conn.close()
    with psycopg2.connect(database) as conn:
        publish.swap_recs(conn, RUN)
    conn.close()
    return database


@pytest.fixture
def api(warehouse, tmp_path):
    store = Store(warehouse)
    client = TestClient(create_app(store, Settings(token=TOKEN, spool_dir=tmp_path / "spool")))
    yield client
    store.close()


def items(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["item_id"] for item in response.json()["items"]]


def test_the_published_list_and_the_cold_start_list(api):
    response = api.get("/v1/users/A/recommendations?n=3", headers=AUTH)
    assert items(response) == ["i1", "i2", "i3"] and response.json()["source"] == "personalized"
    response = api.get("/v1/users/newcomer/recommendations", headers=AUTH)
    assert items(response) == ["i9", "i8"] and response.json()["source"] == "cold_start"
    assert items(api.get("/v1/items/i5/similar", headers=AUTH)) == ["i3"]
    assert api.get("/v1/items/i4/similar", headers=AUTH).status_code == 404
    assert api.get("/v1/healthz").json() == {"status": "ok", "run_id": RUN}


def test_each_placement_serves_its_own_list_and_home_is_for_you(api, tmp_path):
    assert items(api.get("/v1/users/A/recommendations?placement=discover", headers=AUTH)) == ["i5", "i6", "i4"]
    assert items(api.get("/v1/users/A/recommendations?placement=buy_again", headers=AUTH)) == ["i2"]
    home = api.get("/v1/users/A/recommendations?placement=home", headers=AUTH).json()
    assert home["placement"] == "for_you" and [item["item_id"] for item in home["items"]] == ["i1", "i2", "i3", "i4"]
    # nothing bought yet: no buy_again shelf (rather than items never bought); discover falls back to cold start
    response = api.get("/v1/users/newcomer/recommendations?placement=buy_again", headers=AUTH)
    assert items(response) == [] and response.json()["source"] == "none"
    assert items(api.get("/v1/users/newcomer/recommendations?placement=discover", headers=AUTH)) == ["i9", "i8"]
    unknown = api.get("/v1/users/A/recommendations?placement=cart_page", headers=AUTH)
    assert unknown.status_code == 422
    assert unknown.json()["detail"] == (
        "unknown placement 'cart_page'; valid placements: for_you, discover, buy_again, home (= for_you)"
    )
    # the impressions name the placement and the model of its list
    logged = [json.loads(line) for path in (tmp_path / "spool" / "impressions").glob("*.jsonl") for line in path.open()]
    shown = {(line["placement"], line["model_name"], line["item_id"]) for line in logged if line["user_id"] == "A"}
    assert {("discover", "item_knn", "i5"), ("buy_again", "als", "i2"), ("for_you", "als", "i1")} <= shown


def test_a_purchase_in_the_session_leaves_discover_whatever_its_category(api):
    """i6 is Grocery, a repeat-purchase category: bought now, it would stay on for_you, but it leaves discover."""
    bought = {"user_id": "A", "event_type": "purchase", "item_id": "i6", "event_at": "2026-11-02T10:00:00Z"}
    assert api.post("/v1/events", json={"events": [bought]}, headers=AUTH).json()["accepted"] == 1
    assert items(api.get("/v1/users/A/recommendations?placement=discover", headers=AUTH)) == ["i5", "i4"]


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/v1/users/A/recommendations", {}, 401),
        ("/v1/users/A/recommendations", {"Authorization": "Bearer wrong"}, 401),
        ("/v1/users/A/recommendations?n=0", AUTH, 422),
        ("/v1/users/A/recommendations?n=101", AUTH, 422),
        ("/v1/users/a%20b/recommendations", AUTH, 422),
        ("/v1/items/" + "x" * 129 + "/similar", AUTH, 422),
    ],
)
def test_requests_are_authorized_and_validated(api, path, headers, status):
    assert api.get(path, headers=headers).status_code == status


def test_a_purchase_and_a_view_change_the_next_list_within_the_rules(api):
    events = [
        {"user_id": "A", "event_type": "purchase", "item_id": "i1", "event_at": "2026-11-02T10:00:00Z"},
        {"user_id": "A", "event_type": "purchase", "item_id": "i2", "event_at": "2026-11-02T10:01:00Z"},
        {"user_id": "A", "event_type": "view", "item_id": "i5", "event_at": "2026-11-02T10:02:00Z"},
    ]
    assert api.post("/v1/events", json={"events": events}, headers=AUTH).json()["accepted"] == 3
    response = api.get("/v1/users/A/recommendations", headers=AUTH)
    # i1 (Home) was just bought: gone; i2 (Grocery, repeat-purchase) stays; i3, similar to the viewed i5, leads
    assert items(response) == ["i3", "i2", "i4"]
    assert response.json()["items"][0]["reason_code"] == "similar_to_session"
    bad = {"events": [{"user_id": "A", "event_type": "teleport", "item_id": "i1"}]}
    assert api.post("/v1/events", json=bad, headers=AUTH).status_code == 422


def test_posted_events_land_as_a_batch_and_the_counts_reconcile(api, tmp_path, database):
    events = [
        {"user_id": "A", "event_type": "view", "item_id": f"i{n}", "event_at": f"2026-11-02T10:0{n}:00Z"}
        for n in range(1, 6)
    ] + [{"user_id": "B", "event_type": "search", "query": "red mug", "event_at": "2026-11-03T09:00:00Z"}]
    assert api.post("/v1/events", json={"events": events}, headers=AUTH).json()["accepted"] == 6
    shop = tmp_path / "shop"
    conn = psycopg2.connect(database)
    counts = drain(tmp_path / "spool", shop, conn)
    assert counts == {
        "2026-11-02": {"read": 5, "landed": 5, "duplicates": 0, "quarantined": 0},
        "2026-11-03": {"read": 1, "landed": 1, "duplicates": 0, "quarantined": 0},
    }
    assert drain(tmp_path / "spool", shop, conn) == counts  # draining again rewrites the same days
    try:
        audit = {row["table_name"]: row for row in load_landing(conn, shop, "api-2026-11-02")}
    finally:
        conn.close()
    assert (audit["events"]["rows_read"], audit["events"]["rows_loaded"]) == (5, 5)


def test_a_client_over_its_rate_limit_gets_429(warehouse, tmp_path):
    store = Store(warehouse)
    settings = Settings(token=TOKEN, spool_dir=tmp_path / "spool", requests_per_second=0.001, burst=3)
    client = TestClient(create_app(store, settings))
    codes = [client.get("/v1/items/i5/similar", headers=AUTH).status_code for _ in range(4)]
    store.close()
    assert codes == [200, 200, 200, 429]


def test_the_lists_come_from_redis_when_the_online_store_is_there(warehouse, tmp_path):
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"test_api_{uuid.uuid4().hex}"  # its own keys: test runs side by side share the Redis
    try:
        with psycopg2.connect(warehouse) as conn:
            online.push_online(conn, client, RUN, prefix=prefix)
        with psycopg2.connect(warehouse) as conn, conn.cursor() as cur:  # the warehouse copy changes ...
            cur.execute("delete from recs.user_recommendations")
        store = Store(warehouse, client, prefix=prefix)
        api = TestClient(create_app(store, Settings(token=TOKEN, spool_dir=tmp_path / "spool")))
        # ... but the list is read from the online store, one per placement
        assert items(api.get("/v1/users/A/recommendations?n=2", headers=AUTH)) == ["i1", "i2"]
        assert items(api.get("/v1/users/A/recommendations?placement=discover", headers=AUTH)) == ["i5", "i6", "i4"]
        assert items(api.get("/v1/users/A/recommendations?placement=buy_again", headers=AUTH)) == ["i2"]
        assert json.loads(client.get(online.run_key(RUN, "recs", "pA", prefix)))[0]["item_id"] == "i1"
        store.close()
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.mark.parametrize("listens", [False, True], ids=["refuses", "hangs"])
def test_without_redis_the_lists_come_from_the_warehouse(warehouse, tmp_path, listens):
    """A Redis that refuses connections (nothing listens), or that never answers (a socket that accepts and
    says nothing, read with a short timeout): the API answers from the warehouse."""
    silent = socket.create_server(("127.0.0.1", 0))  # listening, never answering
    port = silent.getsockname()[1] if listens else 1
    broken = redis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.5, socket_timeout=0.5)
    store = Store(warehouse, broken)
    api = TestClient(create_app(store, Settings(token=TOKEN, spool_dir=tmp_path / "spool")))
    try:
        assert items(api.get("/v1/users/A/recommendations?n=2", headers=AUTH)) == ["i1", "i2"]
        assert items(api.get("/v1/items/i5/similar", headers=AUTH)) == ["i3"]
        assert items(api.get("/v1/users/A/recommendations?n=1", headers=AUTH)) == ["i1"]  # still, while it is down
    finally:
        store.close()
        silent.close()


def test_an_erased_shopper_gets_404_and_their_events_are_not_spooled(warehouse, tmp_path, monkeypatch):
    """A is erased (the keystore holds the key); the API runs without RECSYS_PSEUDONYM_KEY and still knows."""
    with psycopg2.connect(warehouse) as conn:
        keystore.install_key(conn, KEY)
        erase_user(conn, "A", KEY)
    monkeypatch.delenv("RECSYS_PSEUDONYM_KEY", raising=False)
    store = Store(warehouse)
    api = TestClient(create_app(store, Settings(token=TOKEN, spool_dir=tmp_path / "spool")))
    try:
        assert api.get("/v1/users/A/recommendations", headers=AUTH).status_code == 404
        assert api.get("/v1/users/%20A/recommendations", headers=AUTH).status_code == 422
        events = [{"user_id": "B", "event_type": "view", "item_id": "i1"}, {"user_id": "A", "event_type": "view"}]
        assert api.post("/v1/events", json={"events": events}, headers=AUTH).status_code == 404
        assert list((tmp_path / "spool").glob("*.jsonl")) == []  # nothing of the batch was spooled
        assert items(api.get("/v1/users/B/recommendations", headers=AUTH)) == ["i9", "i8"]  # never erased: cold start
    finally:
        store.close()


PROFILE_TOKEN = "test-profile-token-not-a-secret"


@pytest.fixture
def profiles(warehouse, contract_tables):
    """A's profile: RFM 5-4-3 'champions', high spending power, two interest tags (Home, then Toys)."""
    contract_tables(warehouse, "dim_users", "user_interest_tags")
    with psycopg2.connect(warehouse) as conn, conn.cursor() as cur:
        cur.execute(
            """
            insert into analytics.dim_users (user_id, signup_at, signup_date, age_band, gender, region, platform,
                is_personalization_allowed, has_email, has_phone)
                values ('pA', '2026-01-02T00:00:00Z', '2026-01-02', '25-34', 'f', 'north', 'app', true, true, true);
            insert into analytics.user_profiles (user_id, recency_days, frequency, monetary, r_score, f_score, m_score,
                rfm_segment, spending_power, price_sensitivity, promo_sensitivity, lifecycle_stage, top_categories)
                values ('pA', 3, 7, 412.50, 5, 4, 3, 'champions', 'high', 0.25, 0.5, 'active', 'Home|Toys');
            insert into analytics.user_interest_tags (user_id, tag, tag_type, weight, tag_rank, raw_weight)
                values ('pA', 'Toys', 'category', 0.4, 2, 2.0), ('pA', 'Home', 'category', 1.0, 1, 5.0);
            """
        )
    conn.close()
    return warehouse


def test_the_profile_is_for_the_profile_token_only(profiles, tmp_path):
    store = Store(profiles)
    settings = Settings(token=TOKEN, spool_dir=tmp_path / "spool", profile_token=PROFILE_TOKEN)
    api = TestClient(create_app(store, settings))
    without = TestClient(create_app(store, Settings(token=TOKEN, spool_dir=tmp_path / "spool")))
    profile_auth = {"Authorization": f"Bearer {PROFILE_TOKEN}"}
    try:
        response = api.get("/v1/users/A/profile", headers=profile_auth)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["user_id"] == "A"
        assert {
            key: body["profile"][key] for key in ("rfm_segment", "r_score", "lifecycle_stage", "spending_power")
        } == {
            "rfm_segment": "champions",
            "r_score": 5,
            "lifecycle_stage": "active",
            "spending_power": "high",
        }
        assert (body["profile"]["monetary"], body["profile"]["price_sensitivity"]) == (412.5, 0.25)
        assert [tag["tag"] for tag in body["interest_tags"]] == ["Home", "Toys"]
        assert [(item["item_id"], item["reason_code"]) for item in body["recommendations"]][:2] == [
            ("i1", "popular"),
            ("i2", "popular"),
        ]
        assert not {"gender", "has_email", "has_phone", "email", "phone", "name"} & set(body["profile"])
        assert api.get("/v1/users/A/profile", headers=AUTH).status_code == 403  # the ordinary token
        assert api.get("/v1/users/A/profile").status_code == 401
        assert api.get("/v1/users/nobody/profile", headers=profile_auth).status_code == 404
        assert api.get("/v1/users/A/recommendations", headers=profile_auth).status_code == 401  # profile only
        for headers in (AUTH, profile_auth, {}):  # no profile token configured: no profile endpoint
            assert without.get("/v1/users/A/profile", headers=headers).status_code == 404
    finally:
        store.close()


def test_a_retried_post_is_accepted_once_and_lands_once(api, tmp_path, warehouse):
    """e1 and e2 (twice in the batch): 2 accepted, 1 duplicate; the retry: 0 accepted, 3 duplicates.

    After a restart the API reads the ids back from the spool: the retry is still a duplicate. 3 events
    land (e1, e2, one without an id), read = landed + duplicates + quarantined.
    """
    events = [
        {"event_id": "e1", "user_id": "A", "event_type": "view", "item_id": "i1", "event_at": "2026-11-02T10:00:00Z"},
        {"event_id": "e2", "user_id": "A", "event_type": "view", "item_id": "i2", "event_at": "2026-11-02T10:01:00Z"},
        {"event_id": "e2", "user_id": "A", "event_type": "view", "item_id": "i2", "event_at": "2026-11-02T10:01:00Z"},
    ]
    answer = api.post("/v1/events", json={"events": events}, headers=AUTH).json()
    assert answer == {"accepted": 2, "duplicates": 1, "duplicate_event_ids": ["e2"]}
    answer = api.post("/v1/events", json={"events": events}, headers=AUTH).json()
    assert answer == {"accepted": 0, "duplicates": 3, "duplicate_event_ids": ["e1", "e2", "e2"]}
    no_id = {"user_id": "A", "event_type": "view", "item_id": "i3", "event_at": "2026-11-02T10:02:00Z"}
    assert api.post("/v1/events", json={"events": [no_id]}, headers=AUTH).json()["accepted"] == 1
    store = Store(warehouse)
    restarted = TestClient(create_app(store, Settings(token=TOKEN, spool_dir=tmp_path / "spool")))
    assert restarted.post("/v1/events", json={"events": events[:2]}, headers=AUTH).json()["duplicates"] == 2
    store.close()
    with psycopg2.connect(warehouse) as conn:
        counts = drain(tmp_path / "spool", tmp_path / "shop", conn)
    conn.close()
    assert counts == {"2026-11-02": {"read": 3, "landed": 3, "duplicates": 0, "quarantined": 0}}
    landed = (tmp_path / "shop" / "api-2026-11-02" / "events.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in landed] == ["event_id", "e1", "e2", ""]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/v1/users/a%01b/recommendations", None),
        ("get", "/v1/items/i%7F1/similar", None),
        ("get", "/v1/search?q=red%1Bmug", None),
        ("get", "/v1/search?q=mug&user=a%C2%90b", None),  # U+0090, a C1 control
        ("post", "/v1/events", {"user_id": "a\x01b", "event_type": "view", "item_id": "i1"}),
        ("post", "/v1/events", {"event_id": "e\x00", "user_id": "A", "event_type": "view", "item_id": "i1"}),
        ("post", "/v1/events", {"user_id": "A", "event_type": "search", "query": "red\u0007mug"}),
        ("post", "/v1/events", {"user_id": "A", "event_type": "view", "item_id": "i1", "session_id": "s\n1"}),
    ],
)
def test_control_characters_in_ids_and_queries_are_refused(api, tmp_path, method, path, body):
    response = api.get(path, headers=AUTH) if body is None else api.post(path, json={"events": [body]}, headers=AUTH)
    assert response.status_code == 422, response.text
    assert list((tmp_path / "spool").glob("*.jsonl")) == []


def test_live_sessions_keep_the_last_events_of_the_most_recent_shoppers():
    """3 events per shopper, 2 shoppers: u1's oldest 2 of 5 events go; u2, the least recent, goes for u3."""
    sessions = Sessions(max_events=3, max_users=2)
    for n in range(5):
        sessions.add("u1", f"event{n}")
    sessions.add("u2", "event-u2")
    assert sessions.recent("u1") == ["event2", "event3", "event4"]  # and u1 is now the most recent
    sessions.add("u3", "event-u3")
    assert (sessions.recent("u2"), sessions.recent("u3"), len(sessions)) == ([], ["event-u3"], 2)


def test_a_torn_spool_line_is_quarantined_and_the_other_events_land(api, tmp_path, warehouse):
    """The API was killed mid-write twice: in 11-02 before one more event came, in 11-03 as the last line.

    11-02: e1, e2, the torn line 3 (cut inside a UTF-8 character), e4 (spooled on a line of its own) -> 3 land,
    1 quarantined.
    11-03: e5, then a torn last line -> 1 lands, 1 quarantined.
    """
    view = {"user_id": "A", "event_type": "view", "item_id": "i1"}
    events = [view | {"event_id": f"e{n}", "event_at": f"2026-11-02T10:0{n}:00Z"} for n in (1, 2)]
    events.append(view | {"event_id": "e5", "event_at": "2026-11-03T08:00:00Z"})
    assert api.post("/v1/events", json={"events": events}, headers=AUTH).json()["accepted"] == 3
    spool = tmp_path / "spool"
    with (spool / "2026-11-02.jsonl").open("ab") as handle:
        handle.write('{"event_id":"e3","user_id":"A","event_type":"search","query":"café'.encode()[:-1])  # mid-é
    e4 = view | {"event_id": "e4", "event_at": "2026-11-02T10:04:00Z"}
    assert api.post("/v1/events", json={"events": [e4]}, headers=AUTH).json()["accepted"] == 1
    with (spool / "2026-11-03.jsonl").open("a") as handle:
        handle.write('{"event_id":"e6","user_id":"A"')
    with psycopg2.connect(warehouse) as conn:
        counts = drain(spool, tmp_path / "shop", conn)
        assert drain(spool, tmp_path / "shop", conn) == counts  # again: the same, quarantined once
        with conn.cursor() as cur:
            cur.execute(
                "select batch_id, table_name, source_file, line_number, reason, raw_record from quality.rejected_rows"
                " order by batch_id"
            )
            rejected = cur.fetchall()
    conn.close()
    assert counts == {
        "2026-11-02": {"read": 4, "landed": 3, "duplicates": 0, "quarantined": 1},
        "2026-11-03": {"read": 2, "landed": 1, "duplicates": 0, "quarantined": 1},
    }
    landed = (tmp_path / "shop" / "api-2026-11-02" / "events.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in landed] == ["event_id", "e1", "e2", "e4"]
    assert [row[:4] for row in rejected] == [
        ("api-2026-11-02", "api_spool", "2026-11-02.jsonl", 3),
        ("api-2026-11-03", "api_spool", "2026-11-03.jsonl", 2),
    ]
    assert all(row[4].startswith("torn") for row in rejected)
    assert json.loads(rejected[1][5]) == {
        "sha256": hashlib.sha256(b'{"event_id":"e6","user_id":"A"').hexdigest(),
        "chars": 30,
    }


def test_a_redis_without_a_published_run_yet_leaves_the_lists_to_the_warehouse(warehouse, tmp_path):
    """Redis answers, but nothing was pushed under this prefix: A still gets the published list i1, i2."""
    client = redis.Redis.from_url(REDIS_URL)
    store = Store(warehouse, client, prefix=f"test_api_empty_{uuid.uuid4().hex}")
    api = TestClient(create_app(store, Settings(token=TOKEN, spool_dir=tmp_path / "spool")))
    try:
        response = api.get("/v1/users/A/recommendations?n=2", headers=AUTH)
        assert items(response) == ["i1", "i2"] and response.json()["source"] == "personalized"
    finally:
        store.close()
        client.close()


def test_the_spool_remembers_its_event_ids_across_a_restart_and_the_drain_drops_older_repeats(tmp_path, database):
    """Ids with a quote and a backslash are read back; an id beyond what the spool remembers is spooled again
    (remembered_ids=2: after e1, 'q"1\\', e3 only the last two), and the drain lands it once."""
    at = "2026-11-02T10:00:00Z"
    events = [
        Event(event_id=name, user_id="A", event_type="view", item_id="i1", event_at=at)
        for name in ("e1", 'q"1\\', "e3")
    ]
    anonymous = Event(user_id="A", event_type="view", item_id="i1", event_at=at)
    assert Spool(tmp_path, remembered_ids=2).append([*events, anonymous]) == ([*events, anonymous], [])
    restarted = Spool(tmp_path, remembered_ids=2)
    new, duplicates = restarted.append([*events, anonymous])
    assert ([event.event_id for event in new], duplicates) == (["e1", None], ['q"1\\', "e3"])
    with psycopg2.connect(database) as conn:
        counts = drain(tmp_path, tmp_path / "shop", conn)
    conn.close()
    assert counts == {"2026-11-02": {"read": 6, "landed": 5, "duplicates": 1, "quarantined": 0}}
