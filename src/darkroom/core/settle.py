"""Ending an active project with a refund: the one way a project reaches ``error`` or
``canceled``, whoever ends it (its caller, its worker, recovery)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row

from darkroom.core import credits
from darkroom.core.events import JobEvents
from darkroom.core.projects import Transition
from darkroom.core.status import ACTIVE, Status
from darkroom.store import clock
from darkroom.store import projects as sql


def end_in(
    conn: Connection,
    events: JobEvents,
    row: Row,  # type: ignore[type-arg]
    status: Status,
    code: str | None,
    message: str | None,
    *,
    note: str,
    only_if: Any = None,
    from_: tuple[str, ...] = ACTIVE,
) -> Transition | None:
    """Move an active project (or one in ``from_``) to a terminal status with a full refund,
    recording the change; None if it had already ended (or ``only_if``, an extra condition of
    the UPDATE such as a lease check, did not hold)."""
    moved = sql.move(
        conn,
        row.id,
        from_=from_,
        where=only_if,
        status=status.value,
        error_code=code,
        error_message=message,
        credits_charged=0,
        completed_at=clock.now(conn),
        status_reason=None,
        lease_owner=None,
        lease_until=None,
    )
    if not moved:
        return None
    refunded = credits.refund_in(conn, row.account_id, row.id, note)
    return events.record(conn, row.id, Status(row.status), refunded)


def out_of_attempts_in(
    conn: Connection,
    events: JobEvents,
    row: Row,  # type: ignore[type-arg]
    *,
    only_if: Any,
) -> Transition | None:
    """End a job whose render was cut off once too often (its worker stopped or died) in
    ``error`` with a refund."""
    return end_in(
        conn,
        events,
        row,
        Status.ERROR,
        "worker_lost",
        f"rendering was interrupted {row.attempts} times (its worker stopped or died)",
        note="refund: worker_lost",
        only_if=only_if,
    )
