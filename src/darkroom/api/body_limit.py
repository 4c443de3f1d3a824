"""Request body limits, as pure ASGI middleware.

A body over its route's limit is answered 413, in the dialect's error shape, as soon as that is
known: from its ``Content-Length`` before a byte of it is read (a client that sent
``Expect: 100-continue`` is not even asked for it), or, for a chunked body, once the bytes read
pass the limit. The route's read then fails, so the body is never held in memory in full nor
spooled to disk by the multipart parser, and nothing is charged (every route reads its body
before it charges). The connection is closed after the 413 rather than read to the end of a body
that nobody wants.

Routes that carry source images (the OpenAI edits, multipart, and generations, whose ``image``
may be base64) take ``Settings.upload_max_bytes``; every other route
``Settings.http_body_max_bytes``.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from darkroom.api import errors
from darkroom.core.errors import BodyTooLarge


def declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimitMiddleware:
    def __init__(
        self, app: ASGIApp, *, limit: int, upload_limit: int, upload_paths: Collection[str]
    ) -> None:
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit
        self.upload_paths = frozenset(upload_paths)

    def limit_for(self, path: str) -> int:
        return self.upload_limit if path in self.upload_paths else self.limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = declared_length(scope)
        if declared is not None and declared > limit:
            await refuse(scope, receive, send, limit)
            return
        received = 0
        over = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise BodyTooLarge(limit)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:
                return  # the answer is the 413 below, whatever the route made of its failed read
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not started:
            await refuse(scope, receive, send, limit)


async def refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    response = errors.answer(scope["path"], BodyTooLarge(limit))
    response.headers["connection"] = "close"
    await response(scope, receive, send)
