"""SQL for the stored signing secrets of webhook endpoints, all of them at once (sealing and
re-sealing them: core/webhook_secrets.py)."""

from __future__ import annotations

from sqlalchemy import Connection, Row, bindparam, select, update

from darkroom.store.tables import webhook_endpoints


def all_secrets(conn: Connection) -> list[Row]:  # type: ignore[type-arg]
    """Every endpoint's ``(id, secret)``, deleted ones too (their deliveries may be re-sent)."""
    query = select(webhook_endpoints.c.id, webhook_endpoints.c.secret)
    return list(conn.execute(query.order_by(webhook_endpoints.c.id)))


def replace_secrets(conn: Connection, changes: list[tuple[str, str, str]]) -> int:
    """For each ``(endpoint_id, old, new)``, store ``new`` as the endpoint's secret if it still
    holds ``old`` (another node may have replaced it meanwhile); how many were replaced."""
    if not changes:
        return 0
    result = conn.execute(
        update(webhook_endpoints)
        .where(
            webhook_endpoints.c.id == bindparam("endpoint_id"),
            webhook_endpoints.c.secret == bindparam("old"),
        )
        .values(secret=bindparam("new")),
        [{"endpoint_id": i, "old": old, "new": new} for i, old, new in changes],
    )
    return result.rowcount
