"""Status changes, reported once: :class:`JobEvents` is the one object that the caller's side
(:mod:`darkroom.core.jobs`), the worker's side (:mod:`darkroom.core.work`) and recovery
(:mod:`darkroom.core.recovery`) report every change to.

A change is reported to *recorders* inside its own transaction (webhook deliveries are written
there, so they commit with the change or not at all), signalled to every process once it commits
(long polls, synchronous waits and renders of that project wake up), and reported to *observers*
in this process after the commit (metrics, log lines).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import Connection

from darkroom.core.projects import Project, Transition
from darkroom.core.status import Status
from darkroom.queue.notify import CHANGES, JOBS
from darkroom.store import projects as sql
from darkroom.store.database import Database

Recorder = Callable[[Connection, Transition], None]
Observer = Callable[[Transition], None]


class JobEvents:
    def __init__(
        self,
        db: Database,
        *,
        recorders: Sequence[Recorder] = (),
        observers: Sequence[Observer] = (),
    ) -> None:
        self.db = db
        self.recorders = tuple(recorders)
        self.observers = tuple(observers)

    def record(
        self, conn: Connection, project_id: str, previous: Status | None, refunded: int = 0
    ) -> Transition:
        """Report a change made in ``conn``'s transaction; the caller passes the result to
        :meth:`committed` once the transaction has committed."""
        row = sql.get_project(conn, project_id)
        assert row is not None
        change = Transition(Project.from_row(row), previous, refunded)
        for recorder in self.recorders:
            recorder(conn, change)
        self.db.notify_in(conn, CHANGES, project_id)
        if change.project.status is Status.QUEUED:
            self.job_ready(conn, change.project.model)
        return change

    def job_ready(self, conn: Connection, model: str) -> None:
        """Wake the idle workers that serve ``model`` once the transaction commits."""
        self.db.notify_in(conn, JOBS, model)

    def committed(self, change: Transition) -> None:
        for observer in self.observers:
            observer(change)
