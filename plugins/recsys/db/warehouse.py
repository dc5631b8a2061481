"""Where the warehouse is: ``WAREHOUSE_URL``, or an embedded Postgres.

Without ``WAREHOUSE_URL`` the platform starts the PostgreSQL binaries bundled
in the ``pgserver`` wheel (a real PostgreSQL 16, no system install needed)
with its data under ``.local/pgdata`` of the repository. It listens on
127.0.0.1 and a free port (not on a Unix socket only) because Great
Expectations and cosmos reject a URL without a host. PostgreSQL refuses to
run as root, so under root the server runs as an unprivileged OS user
(``RECSYS_PG_OS_USER``, default ``postgres`` if it exists, else ``nobody``),
and because that user may not be allowed into the repository's folders, its
binaries and data then live in ``$TMPDIR/recsys-pg-<hash of the repo path>``.

One database per shop: ``make run`` builds the simulated shop in ``recsys``, and ``make run DATA=<dir>`` the
shop of that landing directory in a database of its own (:func:`database_for`), so two shops never mix. The
database of the last run is remembered, so ``recsys report``, ``export`` and the rest read that shop.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
from psycopg2 import sql

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
LOCAL_DIR = Path(os.environ.get("RECSYS_LOCAL_DIR", REPO_ROOT / ".local"))
DATABASE = "recsys"
#: the dbt project, whose ``vars`` hold the definitions dbt and the Python tasks share (e.g. event weights)
DBT_PROJECT_FILE = REPO_ROOT / "dbt_project" / "dbt_project.yml"
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "shared_buffers": "512MB",
    "work_mem": "64MB",
    "maintenance_work_mem": "512MB",
    "synchronous_commit": "off",
    # a local warehouse has no replica: a table created and filled in one transaction (dbt's table builds, a
    # first load) skips the write-ahead log, and big inserts do not force a checkpoint every gigabyte of it
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "max_connections": "100",
    "timezone": "UTC",
}


def _pginstall() -> Path:
    import pgserver  # imported here: the wheel only matters for the embedded default

    return Path(pgserver.__file__).parent / "pginstall"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _os_user() -> str | None:
    """The OS user the server runs as: None (the current user) unless we are root."""
    if os.geteuid() != 0:
        return None
    wanted = os.environ.get("RECSYS_PG_OS_USER")
    for name in [wanted] if wanted else ["postgres", "nobody"]:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged user to run PostgreSQL as; set RECSYS_PG_OS_USER")


class EmbeddedPostgres:
    """A PostgreSQL server from the pgserver wheel, with its data in ``data_dir``."""

    def __init__(self, root: Path = LOCAL_DIR):
        self.root = Path(root)
        self.state_file = self.root / "warehouse.json"
        self.user = _os_user()
        # Under root the server runs as another user, who may not be allowed into the repository's
        # folders (a private clone): its binaries and data then live in a world-traversable folder.
        self.server_dir = self.root if self.user is None else _shared_server_dir(self.root)
        self.data_dir = self.server_dir / "pgdata"
        self.log_file = self.server_dir / "postgres.log"

    def _bin(self, name: str) -> str:
        if self.user is None:
            return str(_pginstall() / "bin" / name)
        # the binaries find their libraries at $ORIGIN/../../../pgserver.libs: keep that layout
        copy = self.server_dir / "pgserver" / "pginstall"
        if not (copy / "bin" / "postgres").exists():
            libs = _pginstall().parents[1] / "pgserver.libs"
            shutil.copytree(libs, self.server_dir / "pgserver.libs", dirs_exist_ok=True)
            shutil.copytree(_pginstall(), copy, dirs_exist_ok=True)
        return str(copy / "bin" / name)

    def _run(self, args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(args, user=self.user, capture_output=True, text=True, check=False)

    def _initdb(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        if self.user:
            shutil.chown(self.data_dir, self.user)
            self.data_dir.chmod(0o700)
        result = self._run(
            [
                self._bin("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{result.stderr}")

    def is_running(self) -> bool:
        return (
            self.data_dir.exists()
            and self._run([self._bin("pg_ctl"), "status", "-D", str(self.data_dir)]).returncode == 0
        )

    def _running_port(self) -> int:
        """The port of the running server: the fourth line of its ``postmaster.pid``."""
        return int((self.data_dir / "postmaster.pid").read_text().splitlines()[3])

    def _state(self) -> dict:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    @property
    def port(self) -> int | None:
        return self._state().get("port")

    @property
    def database(self) -> str:
        """The database of the last run (:data:`DATABASE` until a run chose another)."""
        return self._state().get("database", DATABASE)

    def use(self, database: str) -> None:
        """Remember ``database`` as the one later commands read."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps({**self._state(), "database": database}) + "\n")

    def start(self) -> str:
        """Start the server if it is not running; return the URL of the current database (:attr:`database`).

        One process at a time (an exclusive lock on ``warehouse.lock`` in :attr:`root`): two commands, or two
        test processes, starting together get the same server, never two ``initdb`` or two ``pg_ctl start``.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "warehouse.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            return self._start()

    def _start(self) -> str:
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        if not self.is_running():
            port = self.port if self.port and _port_is_free(self.port) else _free_port()
            options = " ".join(
                f"-c {key}={value!r}" if value == "" else f"-c {key}={value}" for key, value in SERVER_SETTINGS.items()
            )
            self.log_file.touch()
            if self.user:
                shutil.chown(self.log_file, self.user)
            result = self._run(
                [
                    self._bin("pg_ctl"),
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-o",
                    f"-p {port} {options}",
                ]
            )
            if result.returncode != 0:
                raise RuntimeError(f"embedded PostgreSQL did not start (see {self.log_file}):\n{result.stderr}")
            self.state_file.write_text(json.dumps({**self._state(), "port": port}) + "\n")
            log.info("embedded PostgreSQL started on 127.0.0.1:%s (data in %s)", port, self.data_dir)
        elif self.port is None:  # running, but the state file is gone (.local deleted, or the clone made again)
            self.state_file.write_text(json.dumps({**self._state(), "port": self._running_port()}) + "\n")
        url = f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"
        create_database(url)
        return url

    def stop(self) -> None:
        if self.is_running():
            self._run([self._bin("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast"])

    def remove(self) -> None:
        """Stop the server and delete its data (``make clean``): the next start makes a new, empty warehouse.

        ``make clean`` also deletes ``.local`` and the pseudonymization key in it; under root the data lives outside
        ``.local`` (:func:`_shared_server_dir`) and, kept, would be a warehouse pseudonymized with the lost key.
        """
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def database_for(landing_dir: Path | None) -> str:
    """The embedded database of a shop: :data:`DATABASE` for the simulated one (``None``), else one per landing
    directory, e.g. ``recsys_online_retail_3f2a9c1e`` (its name and a hash of its full path)."""
    if landing_dir is None:
        return DATABASE
    path = Path(landing_dir).resolve()
    slug = "".join(char if char.isalnum() else "_" for char in path.name.lower())[:30].strip("_") or "shop"
    return f"{DATABASE}_{slug}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"


def _shared_server_dir(root: Path) -> Path:
    """``$TMPDIR/recsys-pg-<hash of root>``, mode 0755, for a server run as another OS user."""
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"recsys-pg-{digest}"
    path.mkdir(mode=0o755, exist_ok=True)
    return path


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def create_database(url: str) -> None:
    """Create the database named in ``url`` if it does not exist."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    conn = psycopg2.connect(admin)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("select 1 from pg_database where datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    finally:
        conn.close()


def warehouse_url(start: bool = True) -> str:
    """The warehouse URL: ``WAREHOUSE_URL`` if set, else the embedded server's (started on demand)."""
    url = os.environ.get("WAREHOUSE_URL")
    if url:
        return url
    embedded = EmbeddedPostgres()
    if start:
        return embedded.start()
    if not embedded.port:
        raise RuntimeError("the embedded warehouse has never been started: run `make run` first")
    return f"postgresql://postgres@127.0.0.1:{embedded.port}/{embedded.database}"


@contextmanager
def connect(url: str | None = None):
    """A psycopg2 connection that commits on success and rolls back on error."""
    conn = psycopg2.connect(url or warehouse_url())
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def dbt_vars(path: Path = DBT_PROJECT_FILE) -> dict:
    """The ``vars`` of the dbt project (``dbt_project.yml``)."""
    import yaml

    return yaml.safe_load(path.read_text())["vars"]


def dbt_env(url: str) -> dict[str, str]:
    """The ``RECSYS_PG*`` variables ``dbt_project/profiles.yml`` reads, from a URL."""
    parts = urlsplit(url)
    return {
        "RECSYS_PGHOST": parts.hostname or "127.0.0.1",
        "RECSYS_PGPORT": str(parts.port or 5432),
        "RECSYS_PGUSER": parts.username or "postgres",
        "RECSYS_PGPASSWORD": parts.password or "",
        "RECSYS_PGDATABASE": parts.path.lstrip("/"),
    }
