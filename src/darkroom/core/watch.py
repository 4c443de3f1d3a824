"""Waiting for a project to end: a synchronous API call (the OpenAI dialect) or a long poll
waits here instead of polling.

:class:`Jobs` reports every committed status change; a waiter is woken at once when its project
changes in this process, and re-reads the database at least every ``poll_seconds`` for projects
that another process (a rendering node sharing the database) finishes. Each read runs on a worker
thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import anyio

from darkroom.core.jobs import Jobs, Project
from darkroom.core.loops import call_soon_in
from darkroom.core.status import Status


class Watch:
    def __init__(self, jobs: Jobs, poll_seconds: float = 1.0) -> None:
        self.jobs = jobs
        self.poll_seconds = poll_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, set[asyncio.Event]] = {}
        jobs.listeners.append(self.changed)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def changed(self, project_id: str) -> None:
        """A project's status changed (callable from any thread)."""
        loop = self._loop
        if loop is None or project_id not in self._waiters:
            return
        call_soon_in(loop, self._wake, project_id)

    def _wake(self, project_id: str) -> None:
        for event in self._waiters.get(project_id, ()):
            event.set()

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
        deadline = loop.time() + timeout
        event = asyncio.Event()
        self._waiters.setdefault(project_id, set()).add(event)
        try:
            while True:
                event.clear()
                project = await anyio.to_thread.run_sync(self.jobs.get, account_id, project_id)
                remaining = deadline - loop.time()
                moved = since is not None and project.status is not since
                if project.status.terminal or moved or remaining <= 0:
                    return project
                if abandoned is not None and await abandoned():
                    return project
                with contextlib.suppress(TimeoutError):  # not wait_for: see webhook_sender
                    async with asyncio.timeout(min(remaining, self.poll_seconds)):
                        await event.wait()
        finally:
            waiters = self._waiters.get(project_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[project_id]
