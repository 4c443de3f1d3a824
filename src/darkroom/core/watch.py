"""Waiting for a project to end: a synchronous API call (the OpenAI dialect) or a long poll
waits here instead of polling.

:class:`Jobs` reports every committed status change; a waiter is woken at once when its project
changes in this process (:meth:`Watch.changed`). For projects that another process (a rendering
node sharing the database) moves, one read every ``poll_seconds`` fetches the status of every
project waited on, and wakes the waiters whose project moved since they last read it: a thousand
long polls cost one query a period, not a thousand. Every read runs on a worker thread, never on
the event loop.

A waiter's reads are bounded as its request's other database calls are (``store/deadline.py``):
a long poll whose database stops answering is answered 503. A waiter that was charged and waits
for its images (the OpenAI dialect's synchronous answer: ``wait_out``) waits an outage out
instead, each read within the request's patience, so that it still ends at its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable

import anyio
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from darkroom.core.jobs import Jobs
from darkroom.core.loops import call_soon_in
from darkroom.core.projects import Project
from darkroom.core.status import Status
from darkroom.store import projects as sql
from darkroom.store.database import is_transient
from darkroom.store.deadline import current_deadline, patience

log = logging.getLogger("darkroom.watch")

CHUNK = 500  # project ids per status query (SQLite's bound-parameter limit is 999 on old builds)


class _Waiter:
    """One waiting request: its wake-up, and the status it last read (None before the first)."""

    __slots__ = ("event", "status")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.status: Status | None = None


# While other processes' changes are signalled, a waiter still re-reads this often (a missed
# signal costs at most this long).
SIGNALLED_POLL_SECONDS = 30.0


class Watch:
    def __init__(
        self,
        jobs: Jobs,
        poll_seconds: float = 1.0,
        *,
        signalled: Callable[[], bool] = lambda: False,
    ) -> None:
        self.jobs = jobs
        # How often the waited-on projects are re-read while other processes' changes cannot be
        # signalled to this one (``signalled()`` False); while they can, waiters only wait.
        self.poll_seconds = poll_seconds
        self.signalled = signalled
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, set[_Waiter]] = {}
        self._poller: asyncio.Task[None] | None = None

    def waiting(self, project_id: str) -> int:
        """How many requests wait for the project now."""
        return len(self._waiters.get(project_id, ()))

    def changed(self, project_id: str) -> None:
        """A project's status changed (callable from any thread)."""
        loop = self._loop
        if loop is None or project_id not in self._waiters:
            return
        call_soon_in(loop, self._wake, project_id)

    def _wake(self, project_id: str) -> None:
        for waiter in self._waiters.get(project_id, ()):
            waiter.event.set()

    async def until_terminal(
        self,
        account_id: str,
        project_id: str,
        timeout: float,
        *,
        since: Status | None = None,
        abandoned: Callable[[], Awaitable[bool]] | None = None,
    ) -> Project:
        """The project once it is complete, error or canceled (or, given ``since``, as soon as
        its status is no longer ``since``); or as it stands when ``timeout`` seconds have passed
        or ``abandoned()`` says nobody waits any more (the caller checks
        :attr:`Project.status`). NotFound if it was deleted meanwhile."""
        loop = asyncio.get_running_loop()
        self._loop = loop  # where changes signalled from other threads wake the waiters
        deadline = loop.time() + timeout
        waiter = _Waiter()
        self._waiters.setdefault(project_id, set()).add(waiter)
        if self._poller is None or self._poller.done():
            # In a context of its own: it reads for every waiter, not within this request's
            # deadline.
            self._poller = loop.create_task(
                self._poll(), name="darkroom-watch", context=contextvars.Context()
            )
        try:
            while True:
                waiter.event.clear()
                read = await self._read(account_id, project_id, deadline)
                if read is None:  # the database is unreachable for now: the wait goes on
                    continue
                project = read
                waiter.status = project.status
                remaining = deadline - loop.time()
                moved = since is not None and project.status is not since
                if project.status.terminal or moved or remaining <= 0:
                    return project
                # Until woken (by a change here, a signal from another node, or the shared
                # poller). A waiter that must know whether its caller left asks every
                # poll_seconds; the others sleep (thousands of open long polls cost no timer).
                while not waiter.event.is_set() and remaining > 0:
                    if abandoned is not None and await abandoned():
                        return project
                    step = remaining if abandoned is None else min(remaining, self.poll_seconds)
                    with contextlib.suppress(TimeoutError):  # not wait_for: see webhook_sender
                        async with asyncio.timeout(step):
                            await waiter.event.wait()
                    remaining = deadline - loop.time()
        finally:
            waiters = self._waiters.get(project_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[project_id]
            if not self._waiters and self._poller is not None:
                self._poller.cancel()  # nobody waits: it starts again with the next waiter
                self._poller = None

    async def _read(self, account_id: str, project_id: str, deadline: float) -> Project | None:
        """The project as the database has it now; None, after a pause, while the database is
        unreachable or locked and the wait has time left. A caller waiting for a project that it
        was already charged for (the OpenAI dialect's synchronous answer) then gets its images
        once the database is back, instead of a 503 that its client would answer by creating
        (and paying for) the project again."""
        loop = asyncio.get_running_loop()
        request = current_deadline()

        def read() -> Project:
            if request is None or not request.patient:
                return self.jobs.get(account_id, project_id)
            with patience(request.seconds):  # a charged wait: each read on its own
                return self.jobs.get(account_id, project_id)

        try:
            return await anyio.to_thread.run_sync(read)
        except DBAPIError as exc:
            remaining = deadline - loop.time()
            given_up = request is not None and request.abandoned  # answered 503 already
            if not is_transient(exc) or remaining <= 0 or given_up:
                raise
            log.debug("project %s: the database does not answer; waiting on", project_id)
            await asyncio.sleep(min(remaining, self.poll_seconds))
            return None

    async def _poll(self) -> None:
        """Every ``poll_seconds`` while anyone waits: wake the waiters whose project's status
        is no longer the one they read (or that was deleted)."""
        while self._waiters:
            await asyncio.sleep(SIGNALLED_POLL_SECONDS if self.signalled() else self.poll_seconds)
            watched = list(self._waiters)
            try:
                found = await anyio.to_thread.run_sync(self._statuses, watched)
            except (
                Exception
            ) as exc:  # the database is unreachable: the waiters' own reads will say so
                log.warning(
                    "reading the status of %d awaited projects failed",
                    len(watched),
                    exc_info=not is_transient(exc),
                )
                continue
            for project_id in watched:
                status = found.get(project_id)
                for waiter in self._waiters.get(project_id, ()):
                    if waiter.status is not None and status != waiter.status.value:
                        waiter.event.set()

    def _statuses(self, project_ids: list[str]) -> dict[str, str]:
        def read(conn: Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            for start in range(0, len(project_ids), CHUNK):
                found.update(sql.statuses(conn, project_ids[start : start + CHUNK]))
            return found

        return self.jobs.db.query(read)
