"""SQL for the stored signing secrets of webhook endpoints, all of them at once (sealing and
re-sealing them: core/webhook_secrets.py)."""

from __future__ import annotations

from sqlalchemy import Connection, Row, select, update

from darkroom.store.tables import webhook_endpoints


def all_secrets(conn: Connection) -> list[Row]:  # type: ignore[type-arg]
    """Every endpoint's ``(id, secret)``, deleted ones too (their deliveries may be re-sent)."""
    query = select(webhook_endpoints.c.id, webhook_endpoints.c.secret)
    return list(conn.execute(query.order_by(webhook_endpoints.c.id)))


def replace_secret(conn: Connection, endpoint_id: str, old: str, new: str) -> bool:
    """Store ``new`` as the endpoint's secret if it still holds ``old`` (another node may have
    replaced it meanwhile); whether it did."""
    result = conn.execute(
        update(webhook_endpoints)
        .where(webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.secret == old)
        .values(secret=new)
    )
    return result.rowcount == 1
