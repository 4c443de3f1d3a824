"""SQL for the cluster's rate limits: one token bucket per key in ``rate_buckets``, shared by
every node on the database.

A bucket holds up to ``capacity`` tokens and refills at ``per_second``; taking one is a single
transaction that locks the key's row (PostgreSQL: the upsert's ``ON CONFLICT DO UPDATE`` takes
the row lock, so concurrent takers of one key queue on it; SQLite: the write transaction's
``BEGIN IMMEDIATE`` serialises all writers), refills it by the time elapsed and writes it back.
Times are unix seconds from each node's clock: a node whose clock lags sees no time elapsed
(never a negative refill), and ``updated_at`` never moves backwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, update
from sqlalchemy.dialects import postgresql, sqlite

from darkroom.store.tables import rate_buckets


@dataclass(frozen=True)
class Bucket:
    tokens: float
    updated_at: float


def refill(bucket: Bucket, now: float, *, capacity: float, per_second: float) -> Bucket:
    """The bucket at ``now``: refilled by the time elapsed since it was last written, up to
    ``capacity``."""
    elapsed = max(0.0, now - bucket.updated_at)
    tokens = min(capacity, bucket.tokens + elapsed * per_second)
    return Bucket(tokens=tokens, updated_at=max(now, bucket.updated_at))


def take(conn: Connection, key: str, now: float, *, capacity: float, per_second: float) -> float:
    """Take one token from ``key``'s bucket (a new bucket starts full). Returns 0.0 when taken,
    else the seconds until a token will be there (and takes nothing)."""
    bucket = refill(_lock(conn, key, now, capacity), now, capacity=capacity, per_second=per_second)
    wait = 0.0 if bucket.tokens >= 1.0 else (1.0 - bucket.tokens) / per_second
    conn.execute(
        update(rate_buckets)
        .where(rate_buckets.c.key == key)
        .values(
            tokens=bucket.tokens - 1.0 if wait == 0.0 else bucket.tokens,
            updated_at=bucket.updated_at,
        )
    )
    return wait


def _lock(conn: Connection, key: str, now: float, capacity: float) -> Bucket:
    """``key``'s bucket as stored, its row created full if missing and locked until the end of
    the transaction."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    new = insert(rate_buckets).values(key=key, tokens=capacity, updated_at=now)
    # A no-op update: it makes the upsert lock the existing row and return it.
    upsert = new.on_conflict_do_update(
        index_elements=[rate_buckets.c.key], set_={"tokens": rate_buckets.c.tokens}
    ).returning(rate_buckets.c.tokens, rate_buckets.c.updated_at)
    row = conn.execute(upsert).one()
    return Bucket(tokens=row.tokens, updated_at=row.updated_at)
