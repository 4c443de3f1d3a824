"""SQL for ``data_formats``: what stored data means where a release changed it (migration 0011)."""

from __future__ import annotations

from sqlalchemy import Connection, func, select, update

from darkroom.store.tables import data_formats


def get(conn: Connection, name: str, *, lock: str | None = None) -> str | None:
    """The format of ``name`` (None if the database has no row for it). ``lock``: "share" to
    hold it against a change until this transaction ends (writing data in that format),
    "update" to change it (rewriting the data); on PostgreSQL only (SQLite writes one at a
    time)."""
    query = select(data_formats.c.format).where(data_formats.c.name == name)
    if lock is not None:
        query = query.with_for_update(read=lock == "share")
    value = conn.execute(query).scalar_one_or_none()
    return None if value is None else str(value)


def set_format(conn: Connection, name: str, value: str) -> None:
    conn.execute(
        update(data_formats)
        .where(data_formats.c.name == name)
        .values(format=value, changed_at=func.current_timestamp())
    )
