"""SQL for the render queue: claiming a job under a lease, renewing, handing back, and finding
jobs whose lease passed or whose waiting node is gone.

Every time in a lease (its start, its end, whether it has passed) is the database's
(``store/clock.py``): nodes whose clocks differ agree on it.

Claims take the next job fairly across accounts: the account whose last claim is oldest (or that
never had one) goes first, then the oldest project. On PostgreSQL the row is locked with
``FOR UPDATE SKIP LOCKED`` so that concurrent workers never wait on each other; on SQLite the
write transaction (``BEGIN IMMEDIATE``) already serialises claims.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from darkroom.store import clock
from darkroom.store import nodes as node_sql
from darkroom.store.tables import projects, queue_turns


def next_claimable(conn: Connection, models: list[str] | None) -> Row | None:  # type: ignore[type-arg]
    """The queued project to render next (id, account_id), locked where the database can."""
    query = (
        select(projects.c.id, projects.c.account_id)
        .select_from(
            projects.outerjoin(queue_turns, queue_turns.c.account_id == projects.c.account_id)
        )
        .where(projects.c.status == "queued")
        .order_by(
            queue_turns.c.last_claim_at.asc().nulls_first(),
            projects.c.created_at,
            projects.c.id,
        )
        .limit(1)
    )
    if models:
        query = query.where(projects.c.model.in_(models))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=projects, skip_locked=True)
    return conn.execute(query).first()


def claim(
    conn: Connection, project_id: str, account_id: str, owner: str, lease_seconds: float
) -> bool:
    """queued → rendering under ``owner``'s lease of ``lease_seconds`` from now, counting the
    attempt and the account's turn."""
    now = clock.now(conn)
    result = conn.execute(
        update(projects)
        .where(projects.c.id == project_id, projects.c.status == "queued")
        .values(
            status="rendering",
            started_at=now,
            attempts=projects.c.attempts + 1,
            lease_owner=owner,
            lease_until=clock.now(conn, lease_seconds),
        )
    )
    if result.rowcount != 1:
        return False
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    upsert = dialect.insert(queue_turns).values(account_id=account_id, last_claim_at=now)
    conn.execute(
        upsert.on_conflict_do_update(
            index_elements=[queue_turns.c.account_id], set_={"last_claim_at": now}
        )
    )
    return True


def _held_by(owner: str) -> Any:
    return and_(projects.c.status == "rendering", projects.c.lease_owner == owner)


def held(project_id: str, owner: str) -> Any:
    """The condition every write of a lease holder adds to its statement (fencing)."""
    return and_(projects.c.id == project_id, _held_by(owner))


def renew(conn: Connection, owner: str, project_ids: list[str], lease_seconds: float) -> set[str]:
    """Extend ``owner``'s leases to ``lease_seconds`` from now; the ids it still holds (a
    missing one was lost)."""
    if not project_ids:
        return set()
    renewed = conn.execute(
        update(projects)
        .where(projects.c.id.in_(project_ids), _held_by(owner))
        .values(lease_until=clock.now(conn, lease_seconds))
        .returning(projects.c.id)
    )
    return {row.id for row in renewed}


def hand_back(conn: Connection, project_id: str, owner: str) -> bool:
    """rendering → queued for another worker (the attempt stays counted); only by the holder."""
    result = conn.execute(
        update(projects)
        .where(held(project_id, owner))
        .values(status="queued", lease_owner=None, lease_until=None, status_reason=None)
    )
    return result.rowcount == 1


def expire(conn: Connection, project_id: str) -> bool:
    """rendering → queued if its lease has passed (its holder is presumed dead)."""
    result = conn.execute(
        update(projects)
        .where(expired_now(conn), projects.c.id == project_id)
        .values(status="queued", lease_owner=None, lease_until=None, status_reason=None)
    )
    return result.rowcount == 1


def expired_now(conn: Connection) -> Any:
    """The condition of a rendering job whose lease has passed (on the database's clock)."""
    return and_(
        projects.c.status == "rendering",
        (projects.c.lease_until.is_(None)) | (projects.c.lease_until < clock.now(conn)),
    )


def with_expired_lease(conn: Connection, limit: int = 100) -> list[Row]:  # type: ignore[type-arg]
    query = select(projects.c.id, projects.c.attempts).where(expired_now(conn)).limit(limit)
    return list(conn.execute(query.order_by(projects.c.created_at)))


# What a waiting request may leave undelivered: a project still to render, or one complete but
# whose answer its waiter has not written yet (``answer_pending``).
UNDELIVERED = ("queued", "rendering", "complete")


def awaited_by_gone(conn: Connection, lease_seconds: float, limit: int = 100) -> list[str]:
    """Projects not yet delivered whose waiting request belonged to a node that is no longer
    alive (no heartbeat for ``lease_seconds``)."""
    query = (
        select(projects.c.id)
        .where(projects.c.status.in_(UNDELIVERED), undelivered_and_waiter_gone(conn, lease_seconds))
        .limit(limit)
    )
    return [row.id for row in conn.execute(query)]


def undelivered_and_waiter_gone(conn: Connection, lease_seconds: float) -> Any:
    """The condition of a project not yet handed over (still active, or complete with its answer
    pending) whose waiting request's node is no longer alive."""
    return and_(
        projects.c.awaited_by.is_not(None),
        projects.c.awaited_by.not_in(node_sql.live_ids(conn, lease_seconds)),
        (projects.c.status != "complete") | projects.c.answer_pending.is_(True),
    )


def answered(conn: Connection, project_id: str, node_id: str) -> bool:
    """The waiting request of ``node_id`` has written the answer of this complete project:
    nobody waits for it any more (and recovery leaves it charged)."""
    result = conn.execute(
        update(projects)
        .where(
            projects.c.id == project_id,
            projects.c.status == "complete",
            projects.c.awaited_by == node_id,
            projects.c.answer_pending.is_(True),
        )
        .values(answer_pending=False)
    )
    return result.rowcount == 1


def queued_total(conn: Connection) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(projects).where(projects.c.status == "queued")
        ).scalar_one()
    )


def queued_counts(conn: Connection, account_ids: list[str]) -> tuple[int, dict[str, int]]:
    """How many projects are queued in all, and per account in ``account_ids``."""
    total = queued_total(conn)
    per_account: dict[str, int] = {}
    if account_ids:
        query = (
            select(projects.c.account_id, func.count())
            .where(projects.c.status == "queued", projects.c.account_id.in_(account_ids))
            .group_by(projects.c.account_id)
        )
        per_account = {row[0]: int(row[1]) for row in conn.execute(query)}
    return total, per_account


def queue_ahead(conn: Connection, project_id: str, account_id: str, created_at: datetime) -> int:
    """How many renders start before this queued project's, under fair turns: the account's own
    older projects, and from every other account as many as the account has turns before it
    (one per turn of this account, at most what it has queued)."""
    own = conn.execute(
        select(func.count())
        .select_from(projects)
        .where(
            projects.c.status == "queued",
            projects.c.account_id == account_id,
            (projects.c.created_at < created_at)
            | ((projects.c.created_at == created_at) & (projects.c.id < project_id)),
        )
    ).scalar_one()
    others = conn.execute(
        select(projects.c.account_id, func.count())
        .where(projects.c.status == "queued", projects.c.account_id != account_id)
        .group_by(projects.c.account_id)
    ).all()
    return int(own) + sum(min(int(count), int(own) + 1) for _, count in others)


def mean_render_ms(conn: Connection, model: str, recent: int = 20) -> float | None:
    """The mean render time of the model's last ``recent`` completed projects."""
    last = (
        select(projects.c.render_ms)
        .where(
            projects.c.model == model,
            projects.c.status == "complete",
            projects.c.render_ms.is_not(None),
        )
        .order_by(projects.c.completed_at.desc())
        .limit(recent)
        .subquery()
    )
    value = conn.execute(select(func.avg(last.c.render_ms))).scalar_one()
    return None if value is None else float(value)
