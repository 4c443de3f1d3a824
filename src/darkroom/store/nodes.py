"""SQL for nodes: every darkroom process while it runs, with the heartbeat that tells the others
it is alive. Every beat, and every "is it alive", is on the database's clock
(``store/clock.py``): a node whose own clock is off is neither dead early nor alive late."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, delete, insert, or_, select, update

from darkroom.store import clock
from darkroom.store.tables import nodes


def register(conn: Connection, row: dict[str, Any], forget_after: float) -> None:
    """Add this node (started and beating now), and delete the rows of nodes gone for more than
    ``forget_after`` seconds (kept a while for operators; each start tidies up)."""
    forget_before = clock.now(conn, -forget_after)
    conn.execute(
        delete(nodes).where(
            or_(nodes.c.heartbeat_at < forget_before, nodes.c.stopped_at < forget_before)
        )
    )
    now = clock.now(conn)
    conn.execute(insert(nodes).values(**row, started_at=now, heartbeat_at=now, stopped_at=None))


def beat(conn: Connection, node_id: str) -> bool:
    """Renew the heartbeat; False if the row is gone or marked stopped (a node declared dead)."""
    result = conn.execute(
        update(nodes)
        .where(nodes.c.id == node_id, nodes.c.stopped_at.is_(None))
        .values(heartbeat_at=clock.now(conn))
    )
    return result.rowcount == 1


def stop(conn: Connection, node_id: str) -> None:
    conn.execute(update(nodes).where(nodes.c.id == node_id).values(stopped_at=clock.now(conn)))


def _alive(conn: Connection, lease_seconds: float) -> Any:
    """Nodes that beat within the last ``lease_seconds`` and did not stop."""
    return and_(
        nodes.c.heartbeat_at >= clock.now(conn, -lease_seconds), nodes.c.stopped_at.is_(None)
    )


def live_ids(conn: Connection, lease_seconds: float) -> Any:
    """A subquery of the ids of the live nodes."""
    return select(nodes.c.id).where(_alive(conn, lease_seconds))


def live(conn: Connection, lease_seconds: float) -> list[Any]:
    query = select(nodes).where(_alive(conn, lease_seconds)).order_by(nodes.c.started_at)
    return list(conn.execute(query))
