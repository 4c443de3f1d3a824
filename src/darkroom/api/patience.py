"""How long a request waits for the database: each HTTP request runs within
``DARKROOM_DATABASE_REQUEST_SECONDS`` of patience (a ``Deadline``, :mod:`darkroom.core.outages`),
so a database that stays locked or unreachable answers 503 with Retry-After in a few seconds instead
of holding the caller for the minute the background loops wait it out.

A database that stops answering without closing its connections holds a call in a socket read
that nothing in the call itself ends. So the request runs as a task of its own, and this
middleware answers it 503 (in its dialect's shape, with Retry-After) once a database call of it
has passed its deadline by :data:`GRACE_SECONDS` (time for the call's own timeouts, which end it
at its deadline when the database still answers, to tell a lock held from a server gone) and the
answer has not begun, whatever that call is doing; it then
gives the request up (``Deadline.abandon``: its calls' connections are interrupted and
invalidated, and nothing of it commits). The task runs on to its end unheard. A request that
waits for something other than the database (a long poll, a charged synchronous answer that
waits outages out) is not answered early.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from darkroom.api.errors import answer
from darkroom.core.errors import DatabaseBusy, DatabaseUnavailable
from darkroom.core.outages import Deadline, deadline_at

log = logging.getLogger("darkroom.api")

GRACE_SECONDS = 0.5


class Patience:
    """Pure ASGI middleware: the budget holds for everything the request runs, on the event
    loop and on the threads it hands work to (they inherit its context)."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = Deadline(self.seconds)
        started = False
        given_up = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if given_up:
                return  # answered already, by the 503 below
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        with deadline_at(deadline):  # the task copies this context
            task = asyncio.ensure_future(self.app(scope, receive, guarded_send))
        try:
            while not await _ended_or_overdue(task, deadline, lambda: started):
                pass
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task.done():
            task.result()  # its exception, if any, goes on up as before
            return
        given_up = True
        error = DatabaseBusy() if deadline.local else DatabaseUnavailable()
        deadline.abandon()
        task.add_done_callback(_forget)
        log.warning(
            "database %s on %s %s: no answer within the request's patience (%g s)",
            "unavailable" if isinstance(error, DatabaseUnavailable) else "busy",
            scope["method"],
            scope["path"],
            self.seconds,
        )
        await answer(scope["path"], error)(scope, receive, send)


async def _ended_or_overdue(
    task: asyncio.Future[None], deadline: Deadline, started: Callable[[], bool]
) -> bool:
    """Wait until the request ends (True), a database call of it is overdue while its answer
    has not begun (True, the task still running), or it is time to look again (False)."""
    now = time.monotonic()
    due = deadline.due()
    if due is not None:
        due += GRACE_SECONDS
    if started() or deadline.patient:
        await asyncio.wait({task})  # nothing to answer for it any more: let it end
        return True
    if due is not None and due <= now:
        return True
    if due is None and now >= deadline.at:
        # Past its deadline and not waiting on the database: hear of its next call.
        loop = asyncio.get_running_loop()
        called = asyncio.Event()
        deadline.on_call = lambda: loop.call_soon_threadsafe(called.set)
        try:
            if deadline.due() is None:  # a call that started just before is seen below
                waiter: asyncio.Future[Any] = asyncio.ensure_future(called.wait())
                try:
                    either: set[asyncio.Future[Any]] = {task, waiter}
                    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
        finally:
            deadline.on_call = None
        return task.done()
    wake = deadline.at if due is None else due
    await asyncio.wait({task}, timeout=max(0.0, wake - now))
    return task.done()


def _forget(task: asyncio.Future[None]) -> None:
    """The end of a request given up on (its answer was the 503)."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("a request given up on ended with %r", task.exception())
