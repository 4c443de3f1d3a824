"""The database: one SQLAlchemy engine, transactions, and schema migrations (Alembic).

SQLite (the embedded default) runs in WAL mode with write transactions opened as
``BEGIN IMMEDIATE`` so that concurrent writers (the server and an operator's CLI command) queue on
the lock instead of failing; other databases use their own defaults.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Connection, Dialect, Engine, create_engine, event, func, select
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry

from darkroom.store.deadline import Call, calling, current_call, current_deadline, gave_up

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

log = logging.getLogger("darkroom.database")

_PENDING = "darkroom_notifications"
Notification = tuple[str, str]  # (channel, payload)

T = TypeVar("T")

# PostgreSQL SQLSTATEs worth another try: serialization failure, deadlock, lock not available, a
# statement canceled (by the statement_timeout of a request's deadline, or an operator), the
# server shutting down or restarting, and the connection classes.
_TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03"}
_SQLITE_TRANSIENT = ("database is locked", "database table is locked", "database is busy")
CONNECT_TIMEOUT_SECONDS = 5  # a PostgreSQL server that does not even refuse (libpq's minimum: 2)
SQLITE_BUSY_MS = 30_000  # how long a SQLite statement waits for a lock, unless patience says less
# The key of the PostgreSQL advisory lock that migrations hold ("darkroo" in ASCII): any 64-bit
# number that nothing else locks.
MIGRATION_LOCK = 0x6461726B726F6F


# TCP keepalives and a user timeout on every PostgreSQL connection: one whose server or network
# path went away without closing it (a host gone, packets dropped) is found dead by the kernel
# in about this long, instead of when TCP gives up (minutes). Requests do not wait for that:
# they give up on a call at their deadline (store/deadline.py).
PG_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 5,  # seconds idle before the first probe
    "keepalives_interval": 2,  # seconds between probes
    "keepalives_count": 3,  # probes unanswered before the connection is dead
    "tcp_user_timeout": 15_000,  # ms that sent data may stay unacknowledged
}


def _lock_wait(default: float) -> float:
    """Seconds a statement may wait now: what is left of the current call's deadline (a little
    at least, so that a last try can still succeed), at most ``default``."""
    call = current_call()
    if call is None:
        return default
    return max(0.05, min(default, call.remaining()))


def is_unreachable(exc: BaseException) -> bool:
    """Whether the database server could not be reached (down, restarting, connection lost),
    as opposed to busy (a lock held, a conflict)."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03")
    # psycopg errors carry a sqlstate attribute, None when the server never answered: a refused
    # or dropped connection (SQLite's errors have none at all, and are never about a server).
    return (
        isinstance(exc, OperationalError | InterfaceError)
        and hasattr(exc.orig, "sqlstate")
        and sqlstate is None
    )


def is_transient(exc: BaseException) -> bool:
    """Whether a database error may pass if the transaction is simply tried again."""
    if not isinstance(exc, DBAPIError):
        return False
    if is_unreachable(exc):
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if isinstance(sqlstate, str) and (
        sqlstate in _TRANSIENT_SQLSTATES or sqlstate.startswith("08")
    ):
        return True
    text = str(exc.orig).lower()
    return any(marker in text for marker in _SQLITE_TRANSIENT)


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class Database:
    def __init__(
        self, url: str, *, sqlite_synchronous: str = "FULL", retry_seconds: float = 60.0
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.sqlite_synchronous = sqlite_synchronous
        self.retry_seconds = retry_seconds
        # Called with the notifications of each committed transaction, in this process (see
        # :meth:`notify_in`; darkroom.queue.notify fans them out).
        self.on_commit: Callable[[list[Notification]], None] | None = None
        if self.is_sqlite:
            # As many connections as the threads that may query at once (the HTTP thread pool
            # has 40): a reader must not wait for a connection behind writers held by a lock.
            self.engine: Engine = create_engine(
                url,
                connect_args={"check_same_thread": False, "timeout": 30},
                hide_parameters=True,  # no prompt text in logged errors
                pool_size=20,
                max_overflow=30,
            )
            _configure_sqlite(self.engine, sqlite_synchronous)
        else:
            self.engine = create_engine(
                url,
                # A server that does not answer at all is given up on after this long (less
                # for a request with less patience left: see _configure_postgres).
                connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS, **PG_KEEPALIVES},
                hide_parameters=True,
                pool_size=10,
                max_overflow=20,
            )
            _configure_postgres(self.engine)

    @contextmanager
    def write(self, *, durable: bool = True) -> Iterator[Connection]:
        """A transaction that will write: committed on success, rolled back on any exception.

        Always atomic. ``durable=False`` is for changes that cost nobody anything when the last
        ones are lost to a power cut (a job claimed or completed: recovery re-runs it); on
        SQLite they skip the fsync at commit. Money moves only in durable transactions.
        """
        relax = not durable and self.is_sqlite and self.sqlite_synchronous != "NORMAL"
        with calling(local=self.is_sqlite) as call, self.engine.connect() as conn:
            # Outside any transaction, on the driver's connection (SQLite ignores the pragma
            # inside one).
            driver = conn.connection.dbapi_connection
            if relax and driver is not None:
                driver.execute("PRAGMA synchronous=NORMAL")
            try:
                conn = conn.execution_options(darkroom_write=True)
                try:
                    with _given_up_on(conn, call), conn.begin():
                        self._bound(conn, call)
                        yield conn
                        if call is not None and call.abandoned:
                            raise gave_up()  # the request stopped waiting: nothing commits
                except BaseException:
                    conn.info.pop(_PENDING, None)
                    raise
                self._committed(conn)
            finally:
                if relax and driver is not None and not conn.invalidated:
                    driver.execute(f"PRAGMA synchronous={self.sqlite_synchronous}")

    def _bound(self, conn: Connection, call: Call | None) -> None:
        """Someone waits for this answer: on PostgreSQL, neither a statement nor a lock wait
        of this transaction outlasts the call's deadline (the server ends them), so a lock held
        elsewhere (a migration, an operator's transaction) or a slow query fails it in time."""
        if call is None or self.is_sqlite:
            return
        ms = round(_lock_wait(3600.0) * 1000)
        conn.exec_driver_sql(
            f"SELECT set_config('statement_timeout', '{ms}', true), "
            f"set_config('lock_timeout', '{ms}', true)"
        )

    def notify_in(self, conn: Connection, channel: str, payload: str) -> None:
        """Signal ``channel`` with ``payload`` when (and only if) ``conn``'s transaction commits:
        to this process's subscribers, and on PostgreSQL to every process that LISTENs
        (``pg_notify`` is transactional). A signal only: readers re-read the tables."""
        conn.info.setdefault(_PENDING, []).append((channel, payload))
        if not self.is_sqlite:
            conn.execute(select(func.pg_notify(channel, payload)))

    def _committed(self, conn: Connection) -> None:
        pending: list[Notification] | None = conn.info.pop(_PENDING, None)
        if pending and self.on_commit is not None:
            self.on_commit(pending)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with (
            calling(local=self.is_sqlite) as call,
            self.engine.connect() as conn,
            _given_up_on(conn, call),
            conn.begin(),
        ):
            self._bound(conn, call)
            yield conn

    def transact(self, work: Callable[[Connection], T], *, durable: bool = True) -> T:
        """``work(conn)`` in a :meth:`write` transaction, run again from the start (with
        exponential backoff and jitter, for up to ``retry_seconds``) when it fails on a transient
        error: a lock held too long, a serialization failure, a dropped connection. ``work`` must
        have no effect outside the transaction."""
        return self._retrying(lambda: self._once(work, durable))

    def query(self, work: Callable[[Connection], T]) -> T:
        """``work(conn)`` in a :meth:`read` transaction, retried as :meth:`transact` is."""

        def once() -> T:
            with self.read() as conn:
                return work(conn)

        return self._retrying(once)

    def _once(self, work: Callable[[Connection], T], durable: bool) -> T:
        with self.write(durable=durable) as conn:
            return work(conn)

    def _retrying(self, attempt: Callable[[], T]) -> T:
        started = time.monotonic()
        deadline = started + self.retry_seconds
        waited_for = current_deadline()
        if waited_for is not None and not waited_for.patient:
            deadline = min(deadline, waited_for.until_for(started))
        delay = 0.01
        tries = 0
        while True:
            try:
                result = attempt()
            except DBAPIError as exc:
                given_up = waited_for is not None and waited_for.abandoned
                if given_up or not is_transient(exc) or time.monotonic() + delay > deadline:
                    raise
                tries += 1
                # One warning per outage and caller, not one per try (an outage of 20 s would
                # log hundreds of lines from the workers alone).
                log.log(
                    logging.WARNING if tries == 1 else logging.DEBUG,
                    "database %s (%s); trying again for up to %.0f s",
                    "unreachable" if is_unreachable(exc) else "busy",
                    type(exc.orig).__name__,
                    deadline - time.monotonic(),
                )
                time.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 1.0)
                continue
            if tries:
                log.info("database answered again after %.1f s", time.monotonic() - started)
            return result

    def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent).

        On PostgreSQL under an advisory lock held by the migration's connection (its session),
        so that any number of nodes may start together on a fresh database: one migrates, the
        others wait for it, then find the schema current. (Two concurrent ``CREATE TABLE`` of one
        table would fail one node with a UniqueViolation.)"""
        with self.engine.connect() as conn:
            if not self.is_sqlite:
                conn.execute(select(func.pg_advisory_lock(MIGRATION_LOCK)))
                conn.commit()
            try:
                with conn.begin():
                    config = alembic_config(self.url)
                    config.attributes["connection"] = conn
                    command.upgrade(config, "head")
            finally:
                if not self.is_sqlite and not conn.invalidated:
                    conn.execute(select(func.pg_advisory_unlock(MIGRATION_LOCK)))
                    conn.commit()

    def revision(self) -> str | None:
        """The schema's migration (``0009``), None on an empty database."""
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@contextmanager
def _given_up_on(conn: Connection, call: Call | None) -> Iterator[None]:
    """Whatever a call given up on ends with (its connection interrupted, or an answer that
    came too late), it ends as :func:`gave_up`, and its connection is invalidated: it may be
    half-way through a statement, and is never returned to the pool."""
    try:
        yield
    except BaseException:
        if call is None or not call.abandoned:
            raise
        if not conn.invalidated:
            conn.invalidate()
        raise gave_up() from None


def _configure_postgres(engine: Engine) -> None:
    """Checkouts that ping (a connection the server dropped, by a restart, is replaced), and
    connections that a request can give up on."""

    @event.listens_for(engine, "connect")
    def _on_connect(_dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        record.info["darkroom_fresh"] = True

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        # SQLAlchemy's pool_pre_ping, with one difference: the call learns its connection
        # before the ping, so that a ping blocked on a server that stopped answering is
        # interrupted at the request's deadline like any statement.
        call = current_call()
        if call is not None:
            call.attach(dbapi_conn)
        if record.info.pop("darkroom_fresh", False):
            return  # just connected: nothing to check
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            if call is not None and call.abandoned:
                raise gave_up() from None
            if engine.dialect.is_disconnect(exc, dbapi_conn, None):  # type: ignore[arg-type]
                raise DisconnectionError() from exc  # the pool connects again, once
            raise

    @event.listens_for(engine, "do_connect")
    def _on_connect_attempt(
        dialect: Dialect, _record: ConnectionPoolEntry, cargs: Any, cparams: dict[str, Any]
    ) -> Any:
        # A request's call waits for a new connection no longer than its deadline (libpq's
        # least connect_timeout is 2 s); the request is answered at its deadline regardless.
        call = current_call()
        if call is None:
            return None
        seconds = min(CONNECT_TIMEOUT_SECONDS, max(2, math.ceil(call.remaining())))
        return dialect.connect(*cargs, **{**cparams, "connect_timeout": seconds})


def _configure_sqlite(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy (below) issue BEGIN itself instead of the driver's implicit one.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # The lock wait of this transaction: what is left of the caller's patience, if less.
        busy_ms = round(_lock_wait(SQLITE_BUSY_MS / 1000) * 1000)
        if conn.info.get("darkroom_busy_ms", SQLITE_BUSY_MS) != busy_ms:
            conn.exec_driver_sql(f"PRAGMA busy_timeout={busy_ms}")
            conn.info["darkroom_busy_ms"] = busy_ms
        immediate = conn.get_execution_options().get("darkroom_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def ping(conn: Connection) -> None:
    """One round trip to the database (for ``/readyz``)."""
    conn.execute(select(1))
