"""SQL for nodes: every darkroom process while it runs, with the heartbeat that tells the others
it is alive."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, or_, select, update

from darkroom.store.tables import nodes


def register(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(insert(nodes).values(**row))


def beat(conn: Connection, node_id: str, now: datetime) -> bool:
    """Renew the heartbeat; False if the row is gone or marked stopped (a node declared dead)."""
    result = conn.execute(
        update(nodes)
        .where(nodes.c.id == node_id, nodes.c.stopped_at.is_(None))
        .values(heartbeat_at=now)
    )
    return result.rowcount == 1


def stop(conn: Connection, node_id: str, now: datetime) -> None:
    conn.execute(update(nodes).where(nodes.c.id == node_id).values(stopped_at=now))


def live_ids(alive_since: datetime) -> Any:
    """A subquery of the ids of the nodes that beat since ``alive_since`` and did not stop."""
    return select(nodes.c.id).where(
        nodes.c.heartbeat_at >= alive_since, nodes.c.stopped_at.is_(None)
    )


def live(conn: Connection, alive_since: datetime) -> list[Any]:
    query = select(nodes).where(nodes.c.heartbeat_at >= alive_since, nodes.c.stopped_at.is_(None))
    return list(conn.execute(query.order_by(nodes.c.started_at)))


def forget_before(conn: Connection, before: datetime) -> int:
    """Delete the rows of nodes gone since before ``before`` (kept a while for operators)."""
    result = conn.execute(
        delete(nodes).where(
            or_(nodes.c.heartbeat_at < before, nodes.c.stopped_at < before),
        )
    )
    return result.rowcount
