"""Shared fixtures: a real darkroom server (uvicorn on loopback) over a temporary data directory,
and accounts with API keys.

``DARKROOM_TEST_DATABASE`` (``sqlite``, the default, or ``postgres``) picks the database of the
run. On PostgreSQL a server is started for the session (tests/postgres.py) and each data directory
a test uses gets its own fresh database; :class:`Databases` says which.

``DARKROOM_TEST_STORAGE`` (``local``, the default, or ``s3``) picks where the images are kept: the
data directory, or a real S3 server (Ceph's radosgw, tests/radosgw.py) started for the session,
with a prefix of one bucket for each database (nodes sharing a database share their storage).
``make test`` runs SQLite with local files, then PostgreSQL with S3: the embedded default, then
a cluster's set-up.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from darkroom.api.app import app_for
from darkroom.api.server import config_for
from darkroom.core import accounts
from darkroom.core.projects import Project
from darkroom.engine.registry import Backends
from darkroom.node import NodeProcess, build
from darkroom.services import Services
from darkroom.settings import Settings
from darkroom.store.database import Database
from tests.postgres import PostgresServer
from tests.radosgw import RadosGateway
from tests.waiting import wait_until

DATABASE = os.environ.get("DARKROOM_TEST_DATABASE", "sqlite")
if DATABASE not in ("sqlite", "postgres"):
    raise pytest.UsageError(f"DARKROOM_TEST_DATABASE must be sqlite or postgres, not {DATABASE!r}")
ON_POSTGRES = DATABASE == "postgres"
sqlite_only = pytest.mark.skipif(ON_POSTGRES, reason="about SQLite itself")
STORAGE = os.environ.get("DARKROOM_TEST_STORAGE", "local")
if STORAGE not in ("local", "s3"):
    raise pytest.UsageError(f"DARKROOM_TEST_STORAGE must be local or s3, not {STORAGE!r}")
ON_S3 = STORAGE == "s3"
TEST_BUCKET = "darkroom-tests"


class Databases:
    """The databases of one test: one per data directory, the same each time it is asked for
    (a server restarted on a data directory finds its database again)."""

    def __init__(
        self,
        postgres: Callable[[], PostgresServer] | None,
        gateway: Callable[[], RadosGateway] | None = None,
    ) -> None:
        self._postgres = postgres
        self._gateway = gateway
        self._urls: dict[Path, str] = {}
        self._prefixes: set[str] = set()

    def url(self, data_dir: Path) -> str:
        """The SQLAlchemy URL of ``data_dir``'s database: SQLite's file in it, or on PostgreSQL a
        database of its own (with the newest schema)."""
        key = data_dir.resolve()
        if key not in self._urls:
            if self._postgres is None:
                self._urls[key] = f"sqlite:///{key / 'darkroom.sqlite3'}"
            else:
                self._urls[key] = self._postgres().create_database()
        return self._urls[key]

    def empty(self, data_dir: Path) -> str:
        """The URL of a new database with nothing in it (no schema), for ``data_dir``."""
        if self._postgres is None:
            data_dir.mkdir(parents=True, exist_ok=True)
            return self.url(data_dir)
        url = self._urls[data_dir.resolve()] = self._postgres().create_database(migrated=False)
        return url

    def unreachable(self) -> str:
        """The URL of a database that cannot be opened, in the run's dialect."""
        if self._postgres is None:
            return "sqlite:////nonexistent/darkroom/darkroom.sqlite3"
        return self._postgres().url("no_such_database")

    def storage_url(self, database_url: str) -> str:
        """Where the nodes on ``database_url`` keep their images on S3 runs: a prefix of the
        session's bucket; empty (the data directory) otherwise."""
        if self._gateway is None:
            return ""
        self._gateway()
        prefix = "t-" + hashlib.sha256(database_url.encode()).hexdigest()[:16]
        self._prefixes.add(prefix)
        return f"s3://{TEST_BUCKET}/{prefix}"

    def env(self, data_dir: Path) -> dict[str, str]:
        """Environment for a ``darkroom`` subprocess on ``data_dir`` (SQLite and local files:
        its defaults)."""
        env: dict[str, str] = {}
        if ON_POSTGRES:
            env |= {
                "DARKROOM_DATABASE_URL": self.url(data_dir),
                "DARKROOM_SECRET_KEY": "test-secret",
                "DARKROOM_ADMIN_TOKEN": "test-admin-token",
            }
        if self._gateway is not None:
            env |= self._gateway().env()
            env["DARKROOM_STORAGE_URL"] = self.storage_url(self.url(data_dir))
        elif ON_POSTGRES:
            env["DARKROOM_STORAGE_SHARED"] = "true"  # see make_settings
        return env

    def drop(self) -> None:
        if self._postgres is not None:
            for url in self._urls.values():
                self._postgres().drop_database(url)
        self._urls.clear()
        if self._gateway is not None and self._prefixes:  # the memory of the S3 server
            client = self._gateway().client()
            for prefix in self._prefixes:
                listed = client.list_objects_v2(Bucket=TEST_BUCKET, Prefix=prefix + "/")
                keys = [{"Key": item["Key"]} for item in listed.get("Contents", [])]
                if keys:
                    client.delete_objects(Bucket=TEST_BUCKET, Delete={"Objects": keys})
            self._prefixes.clear()


_current: Databases | None = None


def current_databases() -> Databases:
    """The running test's :class:`Databases` (for helpers that are not fixtures)."""
    assert _current is not None, "outside a test"
    return _current


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Callable[[], PostgresServer] | None]:
    """On PostgreSQL runs, the session's server, started when a test first needs a database, and
    stopped at the end (also when the run is interrupted or sent SIGTERM, e.g. by ``timeout``)."""
    if not ON_POSTGRES:
        yield None
        return
    started: list[PostgresServer] = []
    failed: list[BaseException] = []

    def get() -> PostgresServer:
        if failed:
            raise RuntimeError("the PostgreSQL test server did not start") from failed[0]
        if not started:
            server = PostgresServer()
            try:
                server.start()
            except BaseException as exc:
                failed.append(exc)
                server.stop()
                raise
            started.append(server)
        return started[0]

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_DFL:  # pytest then tears down, and the server stops
        signal.signal(signal.SIGTERM, interrupt)
    try:
        yield get
    finally:
        for server in started:
            server.stop()
        if previous == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def s3_gateway() -> Iterator[Callable[[], RadosGateway]]:
    """The session's S3 server (radosgw), started when a test first needs it, with the bucket
    of the tests; the AWS variables of this process point at it from then on."""
    started: list[RadosGateway] = []
    failed: list[BaseException] = []
    saved = {name: os.environ.get(name) for name in RadosGateway.ENV_NAMES}

    def get() -> RadosGateway:
        if failed:
            raise RuntimeError("the S3 test server did not start") from failed[0]
        if not started:
            gateway = RadosGateway()
            try:
                gateway.start()
                gateway.create_bucket(TEST_BUCKET)
            except BaseException as exc:
                failed.append(exc)
                raise
            started.append(gateway)
            os.environ.update(gateway.env())
        return started[0]

    try:
        yield get
    finally:
        for gateway in started:
            gateway.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(autouse=True)
def databases(
    postgres_server: Callable[[], PostgresServer] | None,
    s3_gateway: Callable[[], RadosGateway],
) -> Iterator[Databases]:
    """This test's databases (and, on S3 runs, storage prefixes), dropped at its end."""
    global _current
    _current = Databases(postgres_server, s3_gateway if ON_S3 else None)
    try:
        yield _current
    finally:
        _current.drop()
        _current = None


@dataclass
class Account:
    id: str
    key: str
    key_id: str
    tier: str


class LiveServer:
    """darkroom served by uvicorn in a background thread on a free loopback port."""

    def __init__(
        self, settings: Settings, backends: Backends | None = None, http: str = "auto"
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", settings.port))
        self.port = self.sock.getsockname()[1]
        self.settings = settings.model_copy(update={"port": self.port})
        self.url = f"http://127.0.0.1:{self.port}"
        built: tuple[Services, NodeProcess] = build(self.settings, backends)
        self.services, self.node = built
        config = config_for(  # darkroom's limits: head timeout, connection cap
            app_for(self.services, self.node),
            self.settings,
            http=http,  # httptools when installed; "h11" for uvicorn's other protocol
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        wait_until(
            lambda: self.server.started or not self.thread.is_alive(),
            "darkroom test server to start",
            interval=0.01,
        )
        if not self.server.started:
            raise RuntimeError("darkroom test server did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()
        self.services.db.dispose()  # its connections, were the lifespan not to end

    def account(self, tier: str = "business", credits: int = 10_000, name: str = "t") -> Account:
        account_id, key = accounts.create_account(
            self.services.db,
            name=name,
            tier=tier,
            credits_amount=credits,
            known_tiers=list(self.services.catalog.tiers),
        )
        return Account(id=account_id, key=key.key, key_id=key.id, tier=tier)

    def balance(self, account: Account) -> int:
        from darkroom.store import ledger

        with self.services.db.read() as conn:
            value = ledger.balance(conn, account.id)
        assert value is not None
        return value

    def stored(self, project_id: str) -> list[str]:
        """The storage keys of everything kept for a project (images of any attempt, sources)."""
        return self.services.files.keys(project_id)

    def stored_image(self, project_id: str, n: int = 1) -> bytes:
        """Image ``n`` of a complete project, as its storage holds it."""
        return self.services.files.read_output(self._project(project_id), n)

    def overwrite_image(self, project_id: str, n: int, data: bytes) -> None:
        """Replace image ``n`` in storage (a corruption that the database does not know of)."""
        key = self.services.files.output_key(self._project(project_id), n)
        self.services.files.store.put(key, data, content_type="image/png")

    def _project(self, project_id: str) -> Project:
        from darkroom.store import projects

        row = self.services.db.query(lambda conn: projects.get_project(conn, project_id))
        assert row is not None
        return Project.from_row(row)

    def client(self, account: Account | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {account.key}"} if account else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def wait(self, account: Account, project_id: str, timeout: float = 30) -> dict[str, Any]:
        """Poll until the project is terminal; the final GET body."""
        last: list[dict[str, Any]] = [{}]
        with self.client(account) as client:

            def ended() -> dict[str, Any] | None:
                last[0] = client.get(f"/v1/image-projects/{project_id}").json()
                return last[0] if last[0]["status"] in ("complete", "error", "canceled") else None

            return wait_until(
                ended,
                lambda: f"project {project_id} stuck in {last[0].get('status')}",
                timeout=timeout,
                interval=0.01,
            )


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Test settings on ``data_dir`` and its database (unless ``database_url`` is given: a test
    that wants two data directories on one database passes ``databases.url(first)``)."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "port": 0,
        "secret_key": "test-secret",
        "rate_limit_per_minute": 0,
        "workers": 2,
    }
    if ON_POSTGRES:
        # A shared database: the nodes' secrets come from settings (SQLite makes them up).
        values["admin_token"] = "test-admin-token"
        if "database_url" not in overrides:
            values["database_url"] = current_databases().url(data_dir)
        if not ON_S3:
            # The images in the data directory, on one machine: the servers of a test on one
            # database share it (or their storage_url), as a cluster's nodes must share theirs.
            values["storage_shared"] = True
    if ON_S3 and "storage_url" not in overrides:
        database_url = overrides.get("database_url") or current_databases().url(data_dir)
        values["storage_url"] = current_databases().storage_url(database_url)
    values.update(overrides)
    return Settings(**values)


ServerFactory = Callable[..., LiveServer]


@pytest.fixture
def server_factory(tmp_path: Path, databases: Databases) -> Iterator[ServerFactory]:
    """Start servers on ``tmp_path/data`` (or a given data dir); all are stopped at the end."""
    started: list[LiveServer] = []

    def start(backends: Backends | None = None, **overrides: Any) -> LiveServer:
        data_dir = overrides.pop("data_dir", tmp_path / "data")
        http = overrides.pop("http", "auto")
        server = LiveServer(make_settings(data_dir, **overrides), backends, http=http)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.thread.is_alive():
            server.stop()


@pytest.fixture
def server(server_factory: ServerFactory) -> LiveServer:
    return server_factory()


@pytest.fixture
def account(server: LiveServer) -> Account:
    return server.account()


@pytest.fixture
def db(tmp_path: Path, databases: Databases) -> Iterator[Database]:
    """A migrated database of the run's dialect, without a server: for store-level tests."""
    (tmp_path / "store").mkdir()
    database = Database(databases.url(tmp_path / "store"))
    database.migrate()
    yield database
    database.dispose()
