"""Jobs, the worker's side: claiming the next job under a lease, renewing it, and ending it.

A worker (named by its node id, ``owner``) holds each job it renders under a lease that its
heartbeat renews. Every write it makes about the job — a note, complete, fail, hand back —
checks in the same UPDATE that the job is still ``rendering`` under its lease (fencing): a worker
that lost its lease (its heartbeat stopped for longer than the lease, and recovery handed the job
to another worker) can no longer change the job, so each job ends once, by its lease holder.
A lease's start and end are on the database's clock (``store/clock.py``), whatever this node's
own clock says.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from darkroom.core.events import JobEvents
from darkroom.core.projects import Project, StoredImage, Transition
from darkroom.core.settle import end_in, out_of_attempts_in
from darkroom.core.status import Status
from darkroom.store import clock, leases
from darkroom.store import projects as sql
from darkroom.store.database import Database


@dataclass(frozen=True)
class Leased:
    """Jobs a worker holds, and since when on its own monotonic clock: the start of the
    database attempt that granted their leases (a lower bound of the grant, however long the
    call took), so each lease runs at least until ``at`` plus its length."""

    ids: set[str]
    at: float  # time.monotonic()


class Work:
    def __init__(
        self,
        db: Database,
        events: JobEvents,
        *,
        lease_seconds: float = 15.0,
        max_attempts: int = 2,
    ) -> None:
        self.db = db
        self.events = events
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts

    def claim_next(self, owner: str, models: list[str] | None = None) -> Project | None:
        """queued → rendering under ``owner``'s lease: the next job, fairly across accounts,
        among ``models`` (all when None); None when there is none."""
        claimed = self.claim(owner, models)
        return None if claimed is None else claimed[0]

    def claim(self, owner: str, models: list[str] | None = None) -> tuple[Project, float] | None:
        """:meth:`claim_next`, with the moment its lease started on this node's monotonic clock
        (see :class:`Leased`)."""
        started = time.monotonic()

        def work(conn: Connection) -> Transition | None:
            nonlocal started
            started = time.monotonic()  # this attempt's: a retried one starts again
            while True:
                row = leases.next_claimable(conn, models)
                if row is None:
                    return None
                if leases.claim(conn, row.id, row.account_id, owner, self.lease_seconds):
                    return self.events.record(conn, row.id, Status.QUEUED)

        change = self.db.transact(work, durable=False)
        if change is None:
            return None
        self.events.committed(change)
        return change.project, started

    def renew(self, owner: str, project_ids: list[str]) -> Leased:
        """Extend ``owner``'s leases on these jobs; the ones it still holds (a missing one was
        lost), and since when."""
        lease = self.lease_seconds
        started = time.monotonic()

        def work(conn: Connection) -> set[str]:
            nonlocal started
            started = time.monotonic()
            return leases.renew(conn, owner, project_ids, lease)

        kept = self.db.transact(work, durable=False)
        return Leased(kept, started)

    def holds(self, owner: str, project_id: str) -> bool:
        """Whether ``owner`` still renders the job (not canceled, not lost to another worker)."""
        row = self.db.query(lambda conn: sql.get_project(conn, project_id))
        return row is not None and row.status == Status.RENDERING and row.lease_owner == owner

    def set_status_reason(self, owner: str, project_id: str, text: str | None) -> None:
        """Set (or with None clear) the ``status_reason`` of a job ``owner`` renders (what the
        backend is doing: loading weights...)."""
        self.db.transact(
            lambda conn: sql.move(
                conn,
                project_id,
                from_=(Status.RENDERING.value,),
                where=leases.held(project_id, owner),
                status_reason=None if text is None else text[:200],
            ),
            durable=False,
        )

    def complete(
        self,
        owner: str,
        project_id: str,
        *,
        rendered_at: datetime,
        render_ms: int,
        stored: list[StoredImage] | None = None,
        upstream_usage: dict[str, int] | None = None,
    ) -> bool:
        """rendering → complete, recording the stored files' digests; False if ``owner`` no
        longer holds the job (canceled meanwhile, or its lease was lost)."""

        def work(conn: Connection) -> Transition | None:
            moved = sql.move(
                conn,
                project_id,
                from_=(Status.RENDERING.value,),
                where=leases.held(project_id, owner),
                status=Status.COMPLETE.value,
                rendered_at=rendered_at,
                render_ms=render_ms,
                completed_at=clock.now(conn),
                outputs=json.dumps([vars(item) for item in stored or []]),
                **upstream_columns(upstream_usage),
                status_reason=None,
                lease_owner=None,
                lease_until=None,
            )
            return self.events.record(conn, project_id, Status.RENDERING) if moved else None

        change = self.db.transact(work, durable=False)
        if change is None:
            return False
        self.events.committed(change)
        return True

    def fail(self, owner: str, project_id: str, code: str, message: str) -> bool:
        """rendering → error with a refund; False if ``owner`` no longer holds the job."""

        def work(conn: Connection) -> Transition | None:
            row = sql.get_project(conn, project_id)
            if row is None:
                return None
            return end_in(
                conn,
                self.events,
                row,
                Status.ERROR,
                code,
                message,
                note=f"refund: {code}",
                only_if=leases.held(project_id, owner),
            )

        ended = self.db.transact(work)
        if ended is None:
            return False
        self.events.committed(ended)
        return True

    def hand_back(self, owner: str, project_id: str) -> Status | None:
        """Give a job ``owner`` holds back to the queue at once (a worker stopping), or fail it
        with a refund when it is out of attempts; the status it got (None: not held)."""

        def work(conn: Connection) -> Transition | None:
            row = sql.get_project(conn, project_id)
            if row is None:
                return None
            if row.attempts >= self.max_attempts:
                return out_of_attempts_in(
                    conn, self.events, row, only_if=leases.held(project_id, owner)
                )
            if not leases.hand_back(conn, project_id, owner):
                return None
            return self.events.record(conn, project_id, Status.RENDERING)

        change = self.db.transact(work)
        if change is None:
            return None
        self.events.committed(change)
        return change.project.status


def upstream_columns(usage: dict[str, int] | None) -> dict[str, int | None]:
    """What a vendor counted for a render, as the project records it (for the operator's
    margins per model): tokens in and out, and images made."""
    usage = usage or {}
    return {
        "upstream_input_tokens": usage.get("input_tokens"),
        "upstream_output_tokens": usage.get("output_tokens"),
        "upstream_images": usage.get("images"),
    }
