"""The pseudonymization key's one place in the warehouse: a table that SQL reads, so the key is never SQL text.

The key pseudonymizes every shop id (``sha256('<key>:<id>')``). It is handed to the pipeline as
``RECSYS_PSEUDONYM_KEY`` (or the Airflow connection ``pseudonym_key``) and the loader stores it in
``keystore.pseudonym_key`` with ``COPY ... FROM STDIN``: the value travels as data, never inside a
statement, so it is not in ``pg_stat_activity``, server logs, dbt's compiled SQL or ``target/``, nor in
Airflow's rendered fields. Every SQL that pseudonymizes (the dbt macro ``pseudonymize``, the loader's
re-delivery check) reads it with a scalar subquery (:data:`PSEUDONYMIZE_SQL`), evaluated once per query.
The schema is closed to ``public``: only the pipeline's role (the owner) reads it.
"""

from __future__ import annotations

import io
import os
from typing import Any

#: shortest key accepted (characters); ``secrets.token_hex(32)`` gives 64
MIN_KEY_LENGTH = 32
#: the placeholder of ``.env.example`` and the like: refused as a key
PLACEHOLDER_PREFIXES = ("change-me", "changeme", "<")

DDL = """
create schema if not exists keystore;
revoke all on schema keystore from public;
create table if not exists keystore.pseudonym_key (
    only_row boolean primary key default true check (only_row),
    key text not null
);
revoke all on keystore.pseudonym_key from public;
"""

#: the keyed hash of a text expression ``{}`` in SQL: null or empty gives null (the same as the dbt macro)
PSEUDONYMIZE_SQL = (
    "encode(sha256(convert_to((select key from keystore.pseudonym_key) || ':' || nullif(trim({}), ''), 'UTF8')), 'hex')"
)


def check_key(key: str | None) -> str:
    """``key`` if it can pseudonymize: set, not a placeholder, at least :data:`MIN_KEY_LENGTH` characters.

    Raises
    ------
    ValueError
        With how to make a good key.
    """
    advice = "generate one with: python -c 'import secrets; print(secrets.token_hex(32))'"
    if not key:
        raise ValueError(f"RECSYS_PSEUDONYM_KEY is not set: the pseudonymization key is needed; {advice}")
    if key.strip().lower().startswith(PLACEHOLDER_PREFIXES):
        raise ValueError(f"RECSYS_PSEUDONYM_KEY is a placeholder, not a key; {advice}")
    if len(key) < MIN_KEY_LENGTH:
        raise ValueError(f"RECSYS_PSEUDONYM_KEY has {len(key)} characters, fewer than {MIN_KEY_LENGTH}; {advice}")
    return key


def key_from_environment() -> str:
    """``RECSYS_PSEUDONYM_KEY``, checked by :func:`check_key`."""
    return check_key(os.environ.get("RECSYS_PSEUDONYM_KEY"))


def install_key(conn: Any, key: str) -> None:
    """Store ``key`` in ``keystore.pseudonym_key`` if the warehouse has none; refuse another key. Commits.

    Parameters
    ----------
    conn : psycopg2 connection
    key : str
        The pseudonymization key (checked by :func:`check_key`).

    Raises
    ------
    ValueError
        The warehouse was pseudonymized with another key: its ids would no longer match.
    """
    check_key(key)
    with conn.cursor() as cursor:
        cursor.execute("select pg_advisory_xact_lock(hashtext('recsys.keystore'))")
        cursor.execute(DDL)
        cursor.execute("select key from keystore.pseudonym_key")
        stored = cursor.fetchone()
        if stored is None:
            cursor.copy_expert("copy keystore.pseudonym_key (key) from stdin", io.StringIO(_copy_text(key)))
        elif stored[0] != key:
            conn.rollback()
            raise ValueError(
                "this warehouse was pseudonymized with another key (keystore.pseudonym_key): its user ids would no"
                " longer match; use the key it was built with, or a new warehouse (`make clean` deletes the embedded"
                " one, whose key was in .local)"
            )
    conn.commit()


def _copy_text(value: str) -> str:
    """One text field in COPY's text format (backslash, tab and newlines escaped)."""
    escaped = value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return escaped + "\n"
