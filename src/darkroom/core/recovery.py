"""Recovery: no project stays active forever, whichever process dies.

Every node sweeps, on each heartbeat:

- **jobs whose lease has passed** (their worker died, hung or was cut off from the database):
  back to ``queued`` for a live worker, as a new attempt; or, once tried ``max_attempts``
  times, ``error`` with a refund;
- **projects awaited by a node that is gone** (the OpenAI dialect's synchronous answer, whose
  request died with its process) and not yet delivered: nobody will receive the images, so the
  project is canceled and refunded, and its images removed. That holds in any order of events:
  a worker may complete the project before any node notices that its waiter is gone (a lease
  later); it stays undelivered (its waiter clears ``answer_pending`` only once it has written
  the answer), and is refunded then. Its ``image.completed`` webhook is written only on delivery
  (``core/webhooks.py``), so its receivers hear ``image.canceled`` instead.

"Passed" and "gone" are on the database's clock (``store/clock.py``), so a node whose own clock
is off moves nothing early. Every move is a conditional UPDATE, so nodes sweeping at once never
move a project twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

from sqlalchemy import Connection

from darkroom.core.events import JobEvents
from darkroom.core.projects import Transition
from darkroom.core.settle import end_in, out_of_attempts_in
from darkroom.core.status import Status
from darkroom.storage.files import ProjectFiles, quietly
from darkroom.store import leases
from darkroom.store import projects as sql
from darkroom.store.database import Database

log = logging.getLogger("darkroom.recovery")


@dataclass
class Swept:
    requeued: int = 0
    failed: int = 0
    abandoned: int = 0


class Recovery:
    def __init__(
        self,
        db: Database,
        events: JobEvents,
        files: ProjectFiles,
        *,
        lease_seconds: float = 15.0,
        max_attempts: int = 2,
    ) -> None:
        self.db = db
        self.events = events
        self.files = files
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts

    def sweep(self) -> Swept:
        """One sweep (a heartbeat task); what it moved."""
        swept = Swept()
        for row in self.db.query(leases.with_expired_lease):
            change = self.db.transact(partial(self._expire, project_id=row.id))
            if change is None:
                continue
            self._ended(change)
            if change.project.status is Status.QUEUED:
                swept.requeued += 1
                log.warning(
                    "project %s: its worker's lease passed; queued again (attempt %d of %d)",
                    change.project.id,
                    change.project.attempts + 1,
                    self.max_attempts,
                )
            else:
                swept.failed += 1
        lease = self.lease_seconds
        for project_id in self.db.query(lambda conn: leases.awaited_by_gone(conn, lease)):
            ended = self.db.transact(partial(self._abandon, project_id=project_id))
            if ended is not None:
                swept.abandoned += 1
                self._ended(ended)
                log.warning(
                    "project %s: the request waiting for it is gone; canceled and refunded",
                    project_id,
                )
        return swept

    def _expire(self, conn: Connection, project_id: str) -> Transition | None:
        row = sql.get_project(conn, project_id)
        if row is None:
            return None
        if row.attempts >= self.max_attempts:
            return out_of_attempts_in(conn, self.events, row, only_if=leases.expired_now(conn))
        if not leases.expire(conn, project_id):
            return None
        return self.events.record(conn, project_id, Status.RENDERING)

    def _abandon(self, conn: Connection, project_id: str) -> Transition | None:
        row = sql.get_project(conn, project_id)
        if row is None:
            return None
        return end_in(
            conn,
            self.events,
            row,
            Status.CANCELED,
            "abandoned",
            "the request waiting for the images ended with its server; refunded",
            note="refund: waiting request gone",
            # Also once complete (its images were never handed over), and only while its waiter
            # is still gone (not a node that was only slow to beat, and has answered since).
            from_=leases.UNDELIVERED,
            only_if=leases.undelivered_and_waiter_gone(conn, self.lease_seconds),
        )

    def _ended(self, change: Transition) -> None:
        if change.project.status in (Status.ERROR, Status.CANCELED):
            # What the dead workers had written; one still alive removes what it writes later.
            quietly(lambda: self.files.delete_project(change.project))
        self.events.committed(change)
