"""The pseudonymization key's store in the warehouse: checked keys, one key per warehouse, the same hash as Python."""

from __future__ import annotations

import psycopg2
import pytest

from recsys.db import keystore
from recsys.quality import erasure

KEY = "a-test-key-of-forty-characters-0123456789"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (None, "is not set"),
        ("", "is not set"),
        ("change-me-to-a-long-random-secret", "placeholder"),
        ("short-key", "9 characters, fewer than 32"),
    ],
)
def test_a_missing_placeholder_or_short_key_is_refused_with_advice(key, message):
    with pytest.raises(ValueError, match=message) as error:
        keystore.check_key(key)
    assert "secrets.token_hex(32)" in str(error.value)


def test_the_key_is_stored_once_and_another_key_is_refused(database):
    with psycopg2.connect(database) as conn:
        keystore.install_key(conn, KEY)
        keystore.install_key(conn, KEY)  # a rerun: nothing changes
        with pytest.raises(ValueError, match="pseudonymized with another key"):
            keystore.install_key(conn, KEY[::-1])
        with conn.cursor() as cur:
            cur.execute("select key from keystore.pseudonym_key")
            assert cur.fetchall() == [(KEY,)]
            cur.execute("select has_schema_privilege('public', 'keystore', 'usage')")
            assert cur.fetchone() == (False,)


def test_sql_and_python_compute_the_same_pseudonym(database):
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        keystore.install_key(conn, KEY)
        cur.execute(
            f"select {keystore.PSEUDONYMIZE_SQL.format('%s')}, {keystore.PSEUDONYMIZE_SQL.format('%s')}",
            ("  u42 ", "  "),
        )
        assert cur.fetchone() == (erasure.user_key("u42", KEY), None)
