"""Retention (``DARKROOM_RETENTION_DAYS``, off by default): the images of projects completed
longer ago than that are deleted from storage; the project stays, says so (``status_reason``,
``outputs_deleted_at``), and has no downloads any more.

The heartbeat starts a sweep at most once a minute, on a thread of its own (deleting from a
bucket takes a while, and must never delay the renewal of a lease). Objects are deleted before
the project is marked, so a node that dies between the two leaves the mark to the next sweep,
never an object behind. Nodes sweeping at once only delete the same objects twice. A project's
age is on the database's clock (``store/clock.py``), as its completion time is.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import Connection

from darkroom.core.periodic import Periodic
from darkroom.core.projects import Project
from darkroom.storage.files import ProjectFiles
from darkroom.store import clock
from darkroom.store import projects as sql
from darkroom.store.database import Database

log = logging.getLogger("darkroom.retention")

BATCH = 100


class Retention:
    def __init__(
        self, db: Database, files: ProjectFiles, days: float, *, every: float = 60.0
    ) -> None:
        self.db = db
        self.files = files
        self.days = days
        self.age = timedelta(days=days)
        self._periodic = Periodic("retention", self.sweep, every=every)

    @property
    def enabled(self) -> bool:
        return self.age > timedelta(0)

    def tick(self) -> None:
        """Heartbeat task: start a sweep when one is due and none is running."""
        if self.enabled:
            self._periodic.tick()

    def sweep(self, now: datetime | None = None) -> int:
        """Delete the images of every project past the retention age (as of ``now``; by
        default the database's time); how many projects."""
        reason = f"images deleted by the retention policy ({self.days:g} days after completion)"
        age = self.age.total_seconds()
        done = 0
        while True:
            rows = self.db.query(
                lambda conn: sql.outputs_to_delete(
                    conn, clock.now(conn, -age) if now is None else now - self.age, BATCH
                )
            )
            if not rows:
                return done
            projects = [Project.from_row(row) for row in rows]
            for project in projects:
                self.files.delete_outputs(project)
            ids = [project.id for project in projects]

            def mark(conn: Connection, ids: list[str] = ids) -> None:
                sql.mark_outputs_deleted(conn, ids, clock.now(conn) if now is None else now, reason)

            self.db.transact(mark)
            done += len(ids)
            log.info("retention: deleted the images of %d projects", len(ids))
