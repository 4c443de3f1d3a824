"""How long a request waits for the database: each HTTP request runs within
``DARKROOM_DATABASE_REQUEST_SECONDS`` of patience (:mod:`darkroom.core.outages`), so a
database that stays locked or unreachable answers 503 with Retry-After in a few seconds instead
of holding the caller for the minute the background loops wait it out."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from darkroom.core.outages import patience


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
        with patience(self.seconds):
            await self.app(scope, receive, send)
