"""A throwaway PostgreSQL server for the tests: initdb in a temporary directory, served on a free
loopback port (its unix socket inside that directory), and one database per test, each copied
from a template migrated once.

Run as root, the server runs as the ``postgres`` OS user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from darkroom.store.database import Database

BIN = Path(os.environ.get("DARKROOM_TEST_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
OS_USER = "postgres"
TEMPLATE = "darkroom_template"
SERVER_OPTIONS = "-c max_connections=300 -c shared_buffers=32MB"
# Durability is worth nothing to a test database; a benchmark comparing commit rates keeps it.
NOT_DURABLE = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One server for the pytest session: :meth:`start`, then :meth:`create_database` per test,
    :meth:`drop_database` after it, and :meth:`stop` at the end.

    ``durable`` keeps PostgreSQL's defaults (``fsync``, ``synchronous_commit`` and
    ``full_page_writes`` on: a commit is flushed to disk), for benchmarks that compare it with
    SQLite's ``synchronous=FULL``; the tests turn them off."""

    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable
        self.root = Path(tempfile.mkdtemp(prefix="darkroom-postgres-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        self._count = 0
        self._running = False

    @property
    def _dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={OS_USER} dbname=postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{OS_USER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        initdb = BIN / "initdb"
        if not initdb.exists():
            raise RuntimeError(
                f"PostgreSQL is not installed ({initdb} is missing): run scripts/ensure-postgres"
            )
        if self.as_root:
            shutil.chown(self.root, OS_USER, OS_USER)
        self._run(str(initdb), "-D", str(self.data), "-U", OS_USER, "--auth=trust", "--no-sync")
        self.resume()
        self._execute(f"CREATE DATABASE {TEMPLATE}")
        template = Database(self.url(TEMPLATE))
        try:
            template.migrate()
        finally:
            template.dispose()

    def resume(self) -> None:
        """Start the server on its data directory and port (again, after :meth:`halt`)."""
        options = f"-p {self.port} -h 127.0.0.1 -k {self.root} {SERVER_OPTIONS}"
        if not self.durable:
            options += f" {NOT_DURABLE}"
        log = self.root / "server.log"
        self._run(
            str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(log), "-o", options, "-w", "start"
        )
        self._running = True

    def halt(self) -> None:
        """Stop the server as an operator would for maintenance (``pg_ctl stop -m fast``:
        transactions in flight are rolled back, every connection is closed), keeping its data
        for :meth:`resume`."""
        self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        self._running = False

    def create_database(self, *, migrated: bool = True) -> str:
        """A new database, with the newest schema and no rows (or with nothing at all when not
        ``migrated``); its SQLAlchemy URL."""
        self._count += 1
        name = f"test_{self._count}"
        self._execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE if migrated else 'template0'}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        try:
            if self._running:
                self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
                self._running = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _execute(self, statement: str) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self._dsn, autocommit=True) as conn:
                    conn.execute(statement.encode())
                return
            except psycopg.errors.ObjectInUse:
                # CREATE DATABASE ... TEMPLATE while another session still leaves the template.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _run(self, *command: str) -> None:
        if self.as_root:
            command = ("runuser", "-u", OS_USER, "--", *command)
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self.root)
        if result.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-4000:] if log.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}{tail}"
            )
