"""A request's patience with the database: when it stops waiting for it, and the database calls
it has in flight, so that it can give up on them at that moment.

An API request runs within a :class:`Deadline` (``api/patience.py``: a few seconds from its
start). Each database call it makes (``Database.read``/``write``, and so every ``transact`` and
``query``) registers here for as long as it runs, with the moment it is given up on: the
request's deadline, or :data:`MIN_CALL_SECONDS` from the call's start if that is later (a call
that starts after the request spent its patience on something else still gets a moment). Its
statements are bounded by what is left (PostgreSQL's ``statement_timeout`` and ``lock_timeout``,
SQLite's busy timeout).

A database that stops answering without closing its connections (a frozen server, a network
path that drops packets) leaves a call blocked in a socket read that no timeout of the server's
ends. So whoever answers the request at the deadline (the middleware, with a 503) calls
:meth:`Deadline.abandon`: each call in flight has the socket of its connection shut down (the
blocked read returns at once, with an error, and the connection is invalidated, never returned
to the pool as healthy), and none of them commits afterwards, even if the database answers
later. The background loops run without a deadline (they wait an outage out), as does a request
that was charged and waits for its images (:meth:`Deadline.wait_out`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy.exc import OperationalError

log = logging.getLogger("darkroom.database")

# The least time a request's database call gets, even when it starts with less than that left of
# the request's patience.
MIN_CALL_SECONDS = 1.0


class GaveUp(Exception):
    """The request stopped waiting for the database (its deadline passed)."""


def gave_up() -> OperationalError:
    """The error a call given up on ends with: the database is as good as unreachable (a 503
    for the request, were it still waiting for an answer)."""
    return OperationalError(
        "(given up at the request's deadline)",
        None,
        GaveUp("the database did not answer within the request's patience"),
        connection_invalidated=True,
    )


class Call:
    """One database call of a request, while it runs."""

    __slots__ = ("connection", "deadline", "local", "until")

    def __init__(self, deadline: Deadline, until: float, local: bool) -> None:
        self.deadline = deadline
        self.until = until  # time.monotonic() when it is given up on
        # On a database in a local file (SQLite): one that does not answer is busy (locked),
        # never unreachable.
        self.local = local
        self.connection: Any = None  # the driver's connection, once it has one

    @property
    def abandoned(self) -> bool:
        return self.deadline.abandoned

    def remaining(self) -> float:
        return self.until - time.monotonic()

    def attach(self, connection: Any) -> None:
        """The call uses this driver connection (from the pool, or new): it is what to interrupt
        should the call be given up on. Raises :func:`gave_up` if it already was."""
        with self.deadline._lock:
            self.connection = connection
            if not self.deadline.abandoned:
                return
        raise gave_up()


class Deadline:
    """When a request stops waiting for the database (``at``, on ``time.monotonic()``'s clock),
    ``seconds`` after its start, and its calls in flight."""

    def __init__(self, seconds: float, at: float | None = None) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds if at is None else at
        self.patient = False  # see wait_out()
        self.abandoned = False
        self._lock = threading.Lock()
        self._calls: set[Call] = set()
        self._dependents: list[Deadline] = []
        # Called (on the calling thread) each time a call starts: the middleware, once past the
        # deadline with no call in flight, wants to hear of the next one.
        self.on_call: Callable[[], object] | None = None

    @classmethod
    def earliest(cls, deadlines: Iterable[Deadline]) -> Deadline:
        """The deadline of work done for several requests at once (a batch of creates): the
        earliest of theirs, and given up on as soon as any of them gives up."""
        members = list(deadlines)
        joined = cls(min(d.seconds for d in members), at=min(d.at for d in members))
        for member in members:
            with member._lock:
                member._dependents.append(joined)
                gone = member.abandoned
            if gone:
                joined.abandon()
        return joined

    def wait_out(self) -> None:
        """From now on, the request's calls wait an outage out (as the background loops do)
        and are never given up on: it was charged, and waits for the images it paid for; a 503
        now would make its client pay for them again."""
        self.patient = True

    def until_for(self, start: float) -> float:
        """When a call starting at ``start`` is given up on."""
        return max(self.at, start + min(MIN_CALL_SECONDS, max(self.seconds, 0.05)))

    @contextmanager
    def call(self, *, local: bool = False) -> Iterator[Call]:
        """Register a call for as long as the block runs (raises :func:`gave_up` at once if the
        request was already given up on)."""
        call = Call(self, self.until_for(time.monotonic()), local)
        with self._lock:
            if self.abandoned:
                raise gave_up()
            self._calls.add(call)
            notify = self.on_call
        if notify is not None:
            notify()
        try:
            yield call
        finally:
            with self._lock:
                self._calls.discard(call)

    def due(self) -> float | None:
        """The moment the first call in flight is given up on (None: none in flight)."""
        with self._lock:
            return min((call.until for call in self._calls), default=None)

    @property
    def local(self) -> bool:
        """Whether the calls in flight are all on a local database (see :attr:`Call.local`)."""
        with self._lock:
            return bool(self._calls) and all(call.local for call in self._calls)

    def abandon(self) -> None:
        """Give up: interrupt the connections of the calls in flight, and let none of them (nor
        any later one) commit; the same for work done for this request with others."""
        with self._lock:
            if self.abandoned:
                return
            self.abandoned = True
            connections = [c.connection for c in self._calls if c.connection is not None]
            dependents = list(self._dependents)
        for connection in connections:
            interrupt(connection)
        for dependent in dependents:
            dependent.abandon()


def interrupt(connection: Any) -> None:
    """End whatever a driver connection is waiting for, from another thread: a PostgreSQL
    connection's socket is shut down (its blocked read returns with an error, and the driver
    marks the connection broken); a SQLite connection's statement is interrupted."""
    try:
        pgconn = getattr(connection, "pgconn", None)
        if pgconn is None:
            connection.interrupt()
            return
        duplicate = socket.socket(fileno=os.dup(pgconn.socket))
        try:
            duplicate.shutdown(socket.SHUT_RDWR)
        finally:
            duplicate.close()
    except Exception as exc:  # already closed: nothing is waiting on it
        log.debug("could not interrupt a database connection: %s", exc)


_deadline: ContextVar[Deadline | None] = ContextVar("darkroom_database_deadline", default=None)
_call: ContextVar[Call | None] = ContextVar("darkroom_database_call", default=None)


def current_deadline() -> Deadline | None:
    """The deadline of the work in this context, if someone waits for it."""
    return _deadline.get()


def current_call() -> Call | None:
    """The database call this context is making, if it has a deadline."""
    return _call.get()


@contextmanager
def patience(seconds: float) -> Iterator[Deadline]:
    """Within this block (and the threads and tasks it starts), give up on a database that
    stays locked or unreachable ``seconds`` from now: someone is waiting for an answer, and a
    quick "try again" beats a hang."""
    deadline = Deadline(seconds)
    with deadline_at(deadline):
        yield deadline


@contextmanager
def deadline_at(deadline: Deadline | None) -> Iterator[None]:
    """:func:`patience` with the deadline given (None: no limit but the database's)."""
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


@contextmanager
def calling(*, local: bool = False) -> Iterator[Call | None]:
    """A database call of this context for as long as the block runs, registered with its
    deadline (None without one, or when it waits outages out); ``local``: see
    :attr:`Call.local`."""
    deadline = _deadline.get()
    if deadline is None or deadline.patient:
        yield None
        return
    with deadline.call(local=local) as call:
        token = _call.set(call)
        try:
            yield call
        finally:
            _call.reset(token)


def wait_out() -> None:
    """The request of this context was charged and waits for its images: see
    :meth:`Deadline.wait_out`."""
    deadline = _deadline.get()
    if deadline is not None:
        deadline.wait_out()
