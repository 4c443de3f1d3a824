"""SQL for image projects. Every status change is a conditional UPDATE on the current status, so
two parties (a worker, a DELETE, a restart) can never both move the same project."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, insert, select, update

from darkroom.store.tables import projects

_INSERT = insert(projects)
_GET = select(projects).where(projects.c.id == bindparam("project_id"))
_BY_IDEMPOTENCY_KEY = select(projects).where(
    projects.c.account_id == bindparam("account_id"),
    projects.c.idempotency_key == bindparam("key"),
)


def insert_projects(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(_INSERT, rows)


def get_project(conn: Connection, project_id: str) -> Row | None:  # type: ignore[type-arg]
    return conn.execute(_GET, {"project_id": project_id}).first()


def find_by_idempotency_key(conn: Connection, account_id: str, key: str) -> Row | None:  # type: ignore[type-arg]
    return conn.execute(_BY_IDEMPOTENCY_KEY, {"account_id": account_id, "key": key}).first()


def move(
    conn: Connection,
    project_id: str,
    *,
    from_: tuple[str, ...],
    where: Any = None,
    **values: Any,
) -> bool:
    """Set ``values`` on the project if its status is one of ``from_`` (and ``where``, an extra
    condition such as a lease check, holds); whether it was."""
    query = update(projects).where(projects.c.id == project_id, projects.c.status.in_(from_))
    if where is not None:
        query = query.where(where)
    return conn.execute(query.values(**values)).rowcount == 1


def disable(conn: Connection, project_id: str) -> None:
    conn.execute(update(projects).where(projects.c.id == project_id).values(enabled=False))


def count_by_status_and_model(conn: Connection, statuses: tuple[str, ...]) -> list[Row]:  # type: ignore[type-arg]
    """(status, model, count) of the projects in ``statuses`` (the status index serves it)."""
    query = (
        select(projects.c.status, projects.c.model, func.count())
        .where(projects.c.status.in_(statuses))
        .group_by(projects.c.status, projects.c.model)
    )
    return list(conn.execute(query))


def statuses(conn: Connection, project_ids: list[str]) -> dict[str, str]:
    """The status of each of these projects that exists and is not deleted, by id."""
    query = select(projects.c.id, projects.c.status).where(
        projects.c.id.in_(project_ids), projects.c.enabled.is_(True)
    )
    return {row.id: row.status for row in conn.execute(query)}


def outputs_to_delete(conn: Connection, completed_before: Any, limit: int) -> list[Row]:  # type: ignore[type-arg]
    """Complete projects finished before ``completed_before`` whose images are still stored,
    oldest first (the status and completion index serves it)."""
    query = (
        select(projects)
        .where(
            projects.c.status == "complete",
            projects.c.completed_at < completed_before,
            projects.c.outputs_deleted_at.is_(None),
        )
        .order_by(projects.c.completed_at)
        .limit(limit)
    )
    return list(conn.execute(query))


def mark_outputs_deleted(conn: Connection, project_ids: list[str], at: Any, reason: str) -> None:
    query = (
        update(projects)
        .where(projects.c.id.in_(project_ids), projects.c.outputs_deleted_at.is_(None))
        .values(outputs_deleted_at=at, status_reason=reason)
    )
    conn.execute(query)


def page_of(
    conn: Connection,
    account_id: str,
    *,
    limit: int,
    before: tuple[Any, str] | None = None,
    status: str | None = None,
) -> list[Row]:  # type: ignore[type-arg]
    """Up to ``limit`` of the account's projects (not deleted), newest first; only those older
    than ``before`` ((created_at, id) of the last one of the previous page) when given. The
    account and creation index serves it."""
    query = select(projects).where(
        projects.c.account_id == account_id, projects.c.enabled.is_(True)
    )
    if before is not None:
        created_at, project_id = before
        query = query.where(
            (projects.c.created_at < created_at)
            | ((projects.c.created_at == created_at) & (projects.c.id < project_id))
        )
    if status is not None:
        query = query.where(projects.c.status == status)
    query = query.order_by(projects.c.created_at.desc(), projects.c.id.desc()).limit(limit)
    return list(conn.execute(query))
