"""``recsys import mysql`` against a real MariaDB/MySQL server, and its landing files loaded into a real Postgres.

The server is ``RECSYS_TEST_MYSQL_URL`` (default ``mysql://root@127.0.0.1:3306``); each test creates a uniquely
named database holding a small hand-made shop and drops it at the end. An unreachable server fails the tests.
"""

from __future__ import annotations

import csv
import json
import os
import uuid

import psycopg2
import pymysql
import pytest

from recsys import cli
from recsys.ingest.load import load_landing
from recsys.ingest.mysql_import import parse_url

SERVER_URL = os.environ.get("RECSYS_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306")

SCHEMA = [
    """create table users (
        id int primary key, created_at datetime not null, birth_year smallint, gender varchar(16),
        region varchar(64), platform varchar(16), signup_channel varchar(32), email varchar(255),
        phone varchar(32), allow_personalization tinyint(1) not null default 1)""",
    """create table products (
        id int primary key, name varchar(255) not null, category_path varchar(255), brand varchar(64),
        price decimal(10, 2) not null, stock int, created_at timestamp not null default current_timestamp)""",
    """create table orders (
        id int primary key, user_id int not null, status varchar(16) not null, created_at datetime not null,
        platform varchar(16), promotion_id int)""",
    """create table order_items (
        order_id int not null, line_no int not null, product_id int not null, quantity int not null,
        unit_price decimal(10, 2) not null, discount decimal(10, 2), primary key (order_id, line_no))""",
    """create table events (
        id bigint primary key, user_id int not null, product_id int, type varchar(32) not null,
        created_at datetime(3) not null, session_id varchar(64), platform varchar(16), query varchar(255),
        quantity int, price decimal(10, 2))""",
    """create table reviews (
        id int primary key, user_id int not null, product_id int not null, rating tinyint not null,
        created_at datetime not null, body text)""",
    """create table promotions (
        id int primary key, name varchar(255), type varchar(32), discount_value decimal(10, 2),
        category varchar(64), starts_at datetime not null, ends_at datetime not null)""",
]
# no promotion_redemptions table: the optional table is skipped

ROWS = {
    "users": [
        (1, "2026-01-01 09:30:00", 1990, "female", "Bayern", "web", "organic", "ana@example.com", "+49 1", 1),
        (2, "2026-01-02 18:00:05", None, "male", "Zürich", "app", "ads", "bo@example.com", None, 0),
    ],
    "products": [
        (10, "Crème brûlée Schale", "Home > Kitchen > Bowls", "Kochwerk", "12.50", 40, "2026-01-01 12:00:00"),
        (11, "Lamp", "Home > Lighting", None, "30.00", 0, "2026-01-01 12:00:00"),
    ],
    "orders": [
        (100, 1, "delivered", "2026-01-05 10:01:00", "web", 7),
        (101, 2, "canceled", "2026-01-05 11:00:00", "app", None),
    ],
    "order_items": [
        (100, 1, 10, 2, "12.50", "0.00"),
        (100, 2, 11, 1, "30.00", None),
        (100, 3, 10, 1, "11.00", "1.50"),  # the same product again in the order: merged into one line
        (101, 1, 11, 1, "30.00", None),
    ],
    "events": [
        (1000, 1, 10, "view", "2026-01-05 09:58:12.750", "s1", "web", None, None, "12.50"),
        (1001, 1, 10, "add_to_cart", "2026-01-05 09:59:00", "s1", "web", None, 2, "12.50"),
        (1002, 1, None, "search", "2026-01-05 09:57:00", "s1", "web", "schüssel, blau", None, None),
        (1003, 2, 11, "wishlist", "2026-01-05 10:30:00", "s2", "app", None, None, None),  # rejected
        (1004, 1, 10, "purchase", "2026-01-05 10:01:00", "s1", "web", None, 3, "11.83"),
        (1005, 1, 11, "purchase", "2026-01-05 10:01:00", "s1", "web", None, 1, "30.00"),
    ],
    "reviews": [(1, 1, 10, 5, "2026-01-06 08:00:00", 'Sehr schön, "perfekt"\nwürde wieder kaufen')],
    "promotions": [(7, "Winter sale", "percent_off", "10.00", "Home", "2026-01-01 00:00:00", "2026-01-31 23:59:59")],
}

EXPECTED = {
    "users": [
        [
            "user_id",
            "signup_at",
            "birth_year",
            "gender",
            "region",
            "platform",
            "signup_channel",
            "email",
            "phone",
            "is_personalization_allowed",
        ],
        ["1", "2026-01-01T09:30:00Z", "1990", "female", "Bayern", "web", "organic", "ana@example.com", "+49 1", "true"],
        ["2", "2026-01-02T18:00:05Z", "", "male", "Zürich", "app", "ads", "bo@example.com", "", "false"],
    ],
    "items": [
        ["item_id", "name", "category_path", "brand", "price", "stock_quantity", "created_at", "description"],
        # inserted as 12:00 in a +02:00 session: a TIMESTAMP column is read back in UTC; no description column
        ["10", "Crème brûlée Schale", "Home > Kitchen > Bowls", "Kochwerk", "12.50", "40", "2026-01-01T10:00:00Z", ""],
        ["11", "Lamp", "Home > Lighting", "", "30.00", "0", "2026-01-01T10:00:00Z", ""],
    ],
    "orders": [
        ["order_id", "user_id", "ordered_at", "status", "platform", "promotion_id"],
        ["100", "1", "2026-01-05T10:01:00Z", "completed", "web", "7"],
        ["101", "2", "2026-01-05T11:00:00Z", "cancelled", "app", ""],
    ],
    "order_lines": [
        ["order_id", "item_id", "quantity", "unit_price", "discount_amount"],
        ["100", "10", "3", "12", "1.50"],  # (2 * 12.50 + 1 * 11.00) / 3; discounts 0.00 + 1.50
        ["100", "11", "1", "30.00", ""],
        ["101", "11", "1", "30.00", ""],
    ],
    "events": [
        ["event_id", "user_id", "item_id", "event_type", "event_at", "session_id", "platform", "query", "quantity"]
        + ["price", "device_id", "request_id"],  # the shop schema has no device id nor request id: written empty
        ["1000", "1", "10", "view", "2026-01-05T09:58:12Z", "s1", "web", "", "", "12.50", "", ""],
        ["1001", "1", "10", "cart", "2026-01-05T09:59:00Z", "s1", "web", "", "2", "12.50", "", ""],
        ["1002", "1", "", "search", "2026-01-05T09:57:00Z", "s1", "web", "schüssel, blau", "", "", "", ""],
        ["1004", "1", "10", "purchase", "2026-01-05T10:01:00Z", "s1", "web", "", "3", "11.83", "", ""],
        ["1005", "1", "11", "purchase", "2026-01-05T10:01:00Z", "s1", "web", "", "1", "30.00", "", ""],
    ],
    "reviews": [
        ["review_id", "user_id", "item_id", "rating", "reviewed_at", "review_text"],
        ["1", "1", "10", "5", "2026-01-06T08:00:00Z", 'Sehr schön, "perfekt"\nwürde wieder kaufen'],
    ],
    "promotions": [
        ["promotion_id", "name", "promotion_type", "discount_value", "category", "starts_at", "ends_at"],
        ["7", "Winter sale", "percent_off", "10.00", "Home", "2026-01-01T00:00:00Z", "2026-01-31T23:59:59Z"],
    ],
}


def _server_connect(**kwargs):
    target = parse_url(f"{SERVER_URL}/mysql")
    try:
        return pymysql.connect(
            host=target.host, port=target.port, user=target.user, password=target.password, charset="utf8mb4", **kwargs
        )
    except pymysql.err.OperationalError as error:
        pytest.fail(
            f"MariaDB/MySQL at {target.host}:{target.port} is not reachable ({error}): start it (e.g. `docker run -p"
            " 3306:3306 -e MARIADB_ALLOW_EMPTY_ROOT_PASSWORD=1 mariadb:11`) or set RECSYS_TEST_MYSQL_URL"
        )


@pytest.fixture
def mysql_database():
    """A factory: ``mysql_database(schema, rows)`` creates a new database and returns its URL; all dropped after."""
    created = []
    server = _server_connect(autocommit=True)

    def make(schema: list[str], rows: dict[str, list[tuple]]) -> str:
        name = f"recsys_test_{uuid.uuid4().hex[:10]}"
        with server.cursor() as cur:
            cur.execute(f"create database `{name}` character set utf8mb4 collate utf8mb4_unicode_ci")
        created.append(name)
        # a +02:00 session: the products' TIMESTAMP 12:00 is stored as 10:00 UTC
        conn = _server_connect(database=name, init_command="SET time_zone = '+02:00'")
        try:
            with conn.cursor() as cur:
                for statement in schema:
                    cur.execute(statement)
                for table, values in rows.items():
                    placeholders = ", ".join(["%s"] * len(values[0]))
                    cur.executemany(f"insert into `{table}` values ({placeholders})", values)
            conn.commit()
        finally:
            conn.close()
        return f"{SERVER_URL}/{name}"

    yield make
    with server.cursor() as cur:
        for name in created:
            cur.execute(f"drop database if exists `{name}`")
    server.close()


def _read_csv(path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def test_mysql_shop_round_trips_into_the_landing_format_and_loads(mysql_database, database, tmp_path, capsys):
    url = mysql_database(SCHEMA, ROWS)
    out = tmp_path / "landing"

    cli.main(["import", "mysql", "--url", url, "--out", str(out), "--chunk-rows", "2"])

    printed = json.loads(capsys.readouterr().out)
    report = json.loads((out / "import_report.json").read_text())
    assert printed == report
    for name, rows in EXPECTED.items():
        assert _read_csv(out / f"{name}.csv") == rows, name
    assert not (out / "redemptions.csv").exists()
    assert json.loads((out / "manifest.json").read_text())["format_version"] == 1

    assert report["skipped_tables"] == ["promotion_redemptions", "follows", "referrals"]
    assert not (out / "social_edges.csv").exists()
    assert report["files"] == {name: len(rows) - 1 for name, rows in EXPECTED.items()}
    assert report["tables"]["events"] == {
        "source_table": "events",
        "rows_read": 6,
        "rows_used": 5,
        "rows_rejected": 1,
        "rejected_by_reason": {"unknown_event_type": 1},
        "rejected_examples": {"unknown_event_type": [1003]},
        "missing_optional_columns": [],
    }
    assert report["tables"]["order_lines"]["rows_read"] == 4
    assert report["tables"]["order_lines"]["rows_used"] == 4
    # source rows: 2 users + 2 products + 2 orders + 4 order items + 6 events + 1 review + 1 promotion
    assert (report["rows_read"], report["rows_used"], report["rows_rejected"]) == (18, 17, 1)
    for table in report["tables"].values():
        assert table["rows_read"] == table["rows_used"] + table["rows_rejected"]

    conn = psycopg2.connect(database)
    try:
        audits = {row["table_name"]: row for row in load_landing(conn, out, "2026-01-06")}
    finally:
        conn.close()
    for name, rows in EXPECTED.items():
        audit = audits[name]
        assert (audit["rows_read"], audit["rows_loaded"], audit["rows_rejected"]) == (len(rows) - 1, len(rows) - 1, 0)
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("select name from raw.items order by item_id")
        assert cur.fetchall() == [("Crème brûlée Schale",), ("Lamp",)]
        cur.execute("select signup_at, birth_year, is_personalization_allowed from raw.users order by user_id")
        rows = [(at.isoformat(), year, allowed) for at, year, allowed in cur.fetchall()]
        assert rows == [("2026-01-01T09:30:00+00:00", 1990, True), ("2026-01-02T18:00:05+00:00", None, False)]


def test_missing_required_table_and_column_are_named(mysql_database, tmp_path, capsys):
    schema = [statement for statement in SCHEMA if "table events" not in statement]
    schema = [statement.replace("quantity int not null,", "") for statement in schema]
    url = mysql_database(schema, {})

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["import", "mysql", "--url", url, "--out", str(tmp_path / "landing")])

    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "required table `events` is missing" in error
    assert "required column `order_items.quantity` is missing" in error
    assert not (tmp_path / "landing").exists()


def test_password_from_environment_is_used_and_never_shown(mysql_database, tmp_path, capsys, monkeypatch):
    url = mysql_database(SCHEMA[:1], {})
    monkeypatch.setenv("MYSQL_PASSWORD", "not-the-password-42")

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["import", "mysql", "--url", url, "--out", str(tmp_path / "landing")])

    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "cannot connect" in error and "Access denied" in error
    assert f"{url.split('://')[1]}" in error
    assert "not-the-password-42" not in error

    user, rest = url.split("://")[1].split("@")
    with pytest.raises(SystemExit):
        cli.main(["import", "mysql", "--url", f"mysql://{user}:url-secret-7@{rest}", "--out", str(tmp_path / "x")])
    assert "url-secret-7" not in capsys.readouterr().err


SOCIAL_SCHEMA = [
    """create table follows (
        follower_id int not null, followee_id int not null, kind varchar(16), created_at datetime not null,
        product_id int, primary key (follower_id, followee_id))""",
    """create table referrals (referrer_id int not null, referred_id int primary key, created_at datetime not null)""",
]
SOCIAL_ROWS = {
    "follows": [
        (1, 2, None, "2026-01-03 08:00:00", None),  # no kind: a follow
        (2, 1, " Friend ", "2026-01-03 09:00:00", None),
        (1, 1, "follow", "2026-01-03 10:00:00", None),  # rejected: self_edge
        (2, 3, "poke", "2026-01-03 11:00:00", None),  # rejected: unknown_kind
        (3, 1, "share", "2026-01-04 12:00:00", None),  # rejected: missing_item_id
        (3, 2, "share", "2026-01-04 12:30:00", 10),
    ],
    "referrals": [(1, 2, "2026-01-02 18:00:05")],
}


def test_follows_and_referrals_tables_become_social_edges(mysql_database, database, tmp_path, capsys):
    """Both optional tables append to social_edges.csv, reported apart: 6 follows rows read, 3 used (self-edge,
    unknown kind and a share without a product rejected with their reasons), 1 referral; all 4 load."""
    rows = {**ROWS, "users": ROWS["users"] + [(3, "2026-01-03 07:00:00", None, None, None, None, None, None, None, 1)]}
    url = mysql_database(SCHEMA + SOCIAL_SCHEMA, {**rows, **SOCIAL_ROWS})
    out = tmp_path / "landing"

    cli.main(["import", "mysql", "--url", url, "--out", str(out)])

    report = json.loads(capsys.readouterr().out)
    assert _read_csv(out / "social_edges.csv") == [
        ["from_user_id", "to_user_id", "kind", "created_at", "item_id"],
        ["1", "2", "follow", "2026-01-03T08:00:00Z", ""],
        ["2", "1", "friend", "2026-01-03T09:00:00Z", ""],
        ["3", "2", "share", "2026-01-04T12:30:00Z", "10"],
        ["1", "2", "referral", "2026-01-02T18:00:05Z", ""],
    ]
    follows, referrals = report["tables"]["social_edges"], report["tables"]["social_edges.referrals"]
    assert (follows["source_table"], follows["rows_read"], follows["rows_used"]) == ("follows", 6, 3)
    assert follows["rejected_by_reason"] == {"missing_item_id": 1, "self_edge": 1, "unknown_kind": 1}
    assert follows["missing_optional_columns"] == []
    assert (referrals["source_table"], referrals["rows_read"], referrals["rows_used"]) == ("referrals", 1, 1)
    assert report["files"]["social_edges"] == 4
    assert report["skipped_tables"] == ["promotion_redemptions"]

    conn = psycopg2.connect(database)
    try:
        audits = {row["table_name"]: row for row in load_landing(conn, out, "2026-01-06")}
    finally:
        conn.close()
    assert (audits["social_edges"]["rows_read"], audits["social_edges"]["rows_loaded"]) == (4, 4)
