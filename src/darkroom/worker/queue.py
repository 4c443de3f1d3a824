"""The in-process job queue: project ids in submission order, consumed by the runner's workers.

The database is the source of truth; the queue only says "this project is ready". After a restart
``Jobs.recover`` refills it from the database.
"""

from __future__ import annotations

import asyncio
import threading


class InProcessQueue:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def put(self, project_id: str) -> None:
        """Safe to call from the event loop or from any thread."""
        if self._loop is None or threading.get_ident() == self._loop_thread:
            self._queue.put_nowait(project_id)
        else:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, project_id)

    async def get(self) -> str:
        return await self._queue.get()

    def depth(self) -> int:
        return self._queue.qsize()
