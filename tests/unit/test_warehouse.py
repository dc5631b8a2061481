"""One embedded database per shop: the simulated shop in ``recsys``, each landing directory in its own."""

from __future__ import annotations

import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psycopg2

from recsys.db.warehouse import DATABASE, EmbeddedPostgres, database_for


def test_each_landing_directory_gets_its_own_database(tmp_path):
    shop_a, shop_b = tmp_path / "Online Retail", tmp_path / "other" / "Online Retail"
    assert database_for(None) == DATABASE
    assert database_for(shop_a).startswith("recsys_online_retail_")
    assert database_for(shop_a) == database_for(tmp_path / "x" / ".." / "Online Retail")  # the same folder
    assert database_for(shop_a) != database_for(shop_b)  # same name, another folder
    assert len(database_for(tmp_path / ("long" * 40))) < 63  # Postgres truncates names at 63 bytes


def test_the_database_of_the_last_run_is_remembered(tmp_path):
    embedded = EmbeddedPostgres(tmp_path / ".local")  # a fresh clone: the folder does not exist yet
    assert embedded.database == DATABASE
    embedded.use("recsys_shop_1234abcd")
    assert EmbeddedPostgres(tmp_path / ".local").database == "recsys_shop_1234abcd"


def _start(root: Path) -> str:
    return EmbeddedPostgres(root).start()


def test_two_processes_starting_together_share_one_server(tmp_path):
    """Two commands (or test processes) starting the embedded server at once: one initdb, one server."""
    root = tmp_path / ".local"
    try:
        with ProcessPoolExecutor(2) as pool:
            first, second = pool.map(_start, [root, root])
        assert first == second and EmbeddedPostgres(root).is_running()
    finally:
        EmbeddedPostgres(root).stop()


def test_a_running_server_is_found_again_when_its_state_file_is_gone(tmp_path):
    """Deleting .local (or cloning again at the same path, as root) leaves the server running: its port is read back."""
    root = tmp_path / ".local"
    try:
        url = EmbeddedPostgres(root).start()
        (root / "warehouse.json").unlink()
        assert EmbeddedPostgres(root).start() == url
    finally:
        EmbeddedPostgres(root).stop()


def test_removing_the_warehouse_makes_the_next_start_an_empty_one(tmp_path):
    """``make clean`` removes .local and the pseudonymization key in it: the data goes too (under root it lives
    outside .local), or the next ``make run`` would meet a warehouse pseudonymized with the lost key."""
    root = tmp_path / ".local"
    try:
        with psycopg2.connect(EmbeddedPostgres(root).start()) as conn, conn.cursor() as cur:
            cur.execute("create table built_before (id integer)")
        EmbeddedPostgres(root).remove()
        shutil.rmtree(root)
        with psycopg2.connect(EmbeddedPostgres(root).start()) as conn, conn.cursor() as cur:
            cur.execute("select to_regclass('public.built_before')")
            assert cur.fetchone() == (None,)
    finally:
        EmbeddedPostgres(root).remove()
