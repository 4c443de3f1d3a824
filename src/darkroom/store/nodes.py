"""SQL for nodes: every darkroom process while it runs, with the heartbeat that tells the others
it is alive."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, or_, select, update

from darkroom.store.tables import nodes


def register(conn: Connection, row: dict[str, Any], forget_before: datetime) -> None:
    """Add this node, and delete the rows of nodes gone since before ``forget_before`` (kept
    a while for operators; each start tidies up)."""
    conn.execute(
        delete(nodes).where(
            or_(nodes.c.heartbeat_at < forget_before, nodes.c.stopped_at < forget_before)
        )
    )
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


def _alive(since: datetime) -> Any:
    """Nodes that beat since ``since`` and did not stop."""
    return and_(nodes.c.heartbeat_at >= since, nodes.c.stopped_at.is_(None))


def live_ids(alive_since: datetime) -> Any:
    """A subquery of the ids of the live nodes."""
    return select(nodes.c.id).where(_alive(alive_since))


def live(conn: Connection, alive_since: datetime) -> list[Any]:
    query = select(nodes).where(_alive(alive_since)).order_by(nodes.c.started_at)
    return list(conn.execute(query))
