"""Per-key request rate limits: a token bucket per API key, kept in the database so that the
limit holds for the whole cluster, not per node (SQL in :mod:`darkroom.store.ratelimit`)."""

from __future__ import annotations

import asyncio
import time

from darkroom.core.errors import RateLimited
from darkroom.store import ratelimit
from darkroom.store.database import Database


class RateLimiter:
    """``per_minute`` requests per key, in bursts of up to ``per_minute``; 0 turns it off."""

    def __init__(self, db: Database, per_minute: int) -> None:
        self.db = db
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def check(self, key: str, now: float | None = None) -> None:
        """Take one token for ``key`` or raise :class:`RateLimited` with the wait. Blocks on the
        database: from the event loop, await :meth:`check_async`."""
        if not self.enabled:
            return
        at = time.time() if now is None else now
        wait = self.db.transact(
            lambda conn: ratelimit.take(
                conn, key, at, capacity=self.capacity, per_second=self.rate
            ),
            # A bucket lost to a power cut costs nobody anything.
            durable=False,
        )
        if wait > 0:
            raise RateLimited(retry_after=wait)

    async def check_async(self, key: str) -> None:
        """:meth:`check`, run off the event loop."""
        if self.enabled:
            await asyncio.to_thread(self.check, key)
