"""SQL for uploads (``POST /v1/files/upload-urls``): the row of each upload URL handed out, its
account, and when it expires. Expiry is compared with the database's clock
(:func:`darkroom.store.database.clock`), read in the same transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update

from darkroom.store.tables import uploads


def insert_uploads(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(uploads), rows)


def live(conn: Connection, upload_id: str, now: datetime) -> Row | None:  # type: ignore[type-arg]
    """The upload, unless it has expired by ``now``."""
    query = select(uploads).where(uploads.c.id == upload_id, uploads.c.expires_at > now)
    return conn.execute(query).first()


def get(conn: Connection, upload_id: str) -> Row | None:  # type: ignore[type-arg]
    return conn.execute(select(uploads).where(uploads.c.id == upload_id)).first()


def mark_stored(conn: Connection, upload_id: str, size: int, now: datetime) -> bool:
    """Record that the upload's bytes arrived; False if it expired first."""
    result = conn.execute(
        update(uploads)
        .where(uploads.c.id == upload_id, uploads.c.expires_at > now)
        .values(stored_at=now, bytes=size)
    )
    return result.rowcount == 1


def expired(conn: Connection, before: datetime, limit: int) -> list[Row]:  # type: ignore[type-arg]
    """Uploads that expired before ``before``, oldest first."""
    query = (
        select(uploads.c.id, uploads.c.extension)
        .where(uploads.c.expires_at < before)
        .order_by(uploads.c.expires_at)
        .limit(limit)
    )
    return list(conn.execute(query))


def remove(conn: Connection, upload_ids: list[str]) -> None:
    if upload_ids:
        conn.execute(delete(uploads).where(uploads.c.id.in_(upload_ids)))
