"""Group commit of creates: concurrent create requests share one database transaction.

Each request prepares its project (pricing and validation are its own), then waits here. The
requests waiting are charged and stored in one transaction, made durable by one commit (one
fsync), on a thread of its own (the committer): the event loop never waits for the database, and
goes on taking requests meanwhile, which form the next batch. A transaction that meets a transient
error (a lock held too long, a serialization failure, a dropped connection) is run again from the
start (:meth:`Database.transact`). Every request still gets its own outcome, and none is answered
before its project is committed.

A batch waits for the database as long as its least patient request does, and is given up on as
soon as any of its requests is (``store/deadline.py``): no request is answered 503 while its
project might still commit.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.exc import IntegrityError

from darkroom.core.errors import DarkroomError
from darkroom.core.jobs import Jobs
from darkroom.core.projects import Project, Submission
from darkroom.store.database import is_transient
from darkroom.store.deadline import Deadline, calling, current_deadline, deadline_at, gave_up

log = logging.getLogger("darkroom.intake")

MAX_BATCH = 256

Outcome = Project | DarkroomError


class Intake:
    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs
        # Each create waiting for the next batch, with its request's deadline (None: no limit).
        self._waiting: list[tuple[Submission, asyncio.Future[Outcome], Deadline | None]] = []
        self._committer: ThreadPoolExecutor | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def submit(self, item: Submission) -> Project:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._waiting.append((item, future, current_deadline()))
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = loop.create_task(self._drain())
        # The request waits on the database: the committer's call for it.
        with calling(local=self.jobs.db.is_sqlite):
            outcome = await future
        if isinstance(outcome, DarkroomError):
            raise outcome
        return outcome

    async def submit_with_sources(
        self, item: Submission, images: list[bytes], mask: bytes | None
    ) -> Project:
        """Store an edit's source images (and mask) for its worker, then :meth:`submit` it; the
        sources go again when it is refused, or when it repeats an earlier request (with an
        Idempotency-Key: that request's project, and sources, stand)."""
        count = len(images)
        if count:
            await asyncio.to_thread(self.jobs.keep_sources, item.id, images, mask)
        try:
            project = await self.submit(item)
        except BaseException:
            if count:  # not stored
                await asyncio.to_thread(self.jobs.discard_sources, item.id, count)
            raise
        if count and project.id != item.id:
            await asyncio.to_thread(self.jobs.discard_sources, item.id, count)
        return project

    async def _drain(self) -> None:
        """Commit batches, one at a time, until nobody is waiting."""
        if self._committer is None:
            self._committer = ThreadPoolExecutor(1, thread_name_prefix="darkroom-commit")
        await asyncio.sleep(0)  # let the requests of this turn of the loop join the batch
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            batch = self._still_waited_for(batch)
            if not batch:
                continue
            items = [item for item, _, _ in batch]
            deadlines = [deadline for _, _, deadline in batch]
            patience = None
            if None not in deadlines:
                patience = Deadline.earliest(d for d in deadlines if d is not None)
            try:
                outcomes = await self._commit(items, patience)
            except Exception as exc:
                log.warning(
                    "a batch of %d creates failed", len(batch), exc_info=not is_transient(exc)
                )
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future, _), outcome in zip(batch, outcomes, strict=True):
                if not future.done():
                    future.set_result(outcome)

    @staticmethod
    def _still_waited_for(
        batch: list[tuple[Submission, asyncio.Future[Outcome], Deadline | None]],
    ) -> list[tuple[Submission, asyncio.Future[Outcome], Deadline | None]]:
        """The creates whose request still waits; the others (answered 503 at their deadline
        while an earlier batch held the database) are not made."""
        kept = []
        for entry in batch:
            _, future, deadline = entry
            if deadline is not None and deadline.abandoned:
                if not future.done():
                    future.set_exception(gave_up())
            else:
                kept.append(entry)
        return kept

    async def _commit(self, items: list[Submission], deadline: Deadline | None) -> list[Outcome]:
        loop = asyncio.get_running_loop()

        def commit() -> list[Outcome]:
            with deadline_at(deadline):
                return self._commit_now(items)

        return await loop.run_in_executor(self._committer, commit)

    def _commit_now(self, items: list[Submission]) -> list[Outcome]:
        """Charge, store and queue one batch (on the committer thread)."""
        try:
            # stage() writes only through conn: a transaction run again starts from scratch.
            outcomes = self.jobs.db.transact(lambda conn: self.jobs.stage(conn, items))
        except IntegrityError:
            # A race on an Idempotency-Key with another process: settle the items one by one
            # (submit_many queues what it creates).
            return self.jobs.submit_many(items)
        self.jobs.publish(items, outcomes)
        return outcomes

    def close(self) -> None:
        if self._committer is not None:
            self._committer.shutdown(wait=True)
            self._committer = None
