"""Group commit of creates: concurrent create requests share one database transaction.

Each request prepares its project (pricing and validation are its own), then waits here; once
the requests that arrived in the same turn of the event loop have all joined, one transaction
charges and stores them all and one commit (one fsync) makes them durable. Every request still
gets its own outcome, and none is answered before its project is committed.

The transaction runs on the event loop thread: SQLite lives in this process and a batch takes
well under a millisecond, which is cheaper than handing it to a thread.
"""

from __future__ import annotations

import asyncio
import logging

from darkroom.core.errors import DarkroomError
from darkroom.core.jobs import Jobs, Project, Submission

log = logging.getLogger("darkroom.intake")

MAX_BATCH = 256


class Intake:
    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs
        self._waiting: list[tuple[Submission, asyncio.Future[Project | DarkroomError]]] = []
        self._flush_scheduled = False

    async def submit(self, item: Submission) -> Project:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Project | DarkroomError] = loop.create_future()
        self._waiting.append((item, future))
        if len(self._waiting) >= MAX_BATCH:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        outcome = await future
        if isinstance(outcome, DarkroomError):
            raise outcome
        return outcome

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._waiting = self._waiting, []
        if not batch:
            return
        try:
            outcomes = self.jobs.submit_many([item for item, _ in batch])
        except Exception as exc:
            log.exception("a batch of %d creates failed", len(batch))
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)
