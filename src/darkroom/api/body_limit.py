"""Request body limits, as pure ASGI middleware.

A body over its route's limit is answered 413, in the dialect's error shape, as soon as that is
known: from its ``Content-Length`` before a byte of it is read (a client that sent
``Expect: 100-continue`` is not even asked for it), or, for a chunked body, once the bytes read
pass the limit. The route's read then fails, so the body is never held in memory in full nor
spooled to disk by the multipart parser, and nothing is charged (every route reads its body
before it charges). The connection is closed after the 413 rather than read to the end of a body
that nobody wants.

A body that stalls (no byte of it for ``Settings.http_body_timeout_seconds``: a client that sent
its head, then trickles or stops) is answered 408 the same way, so a slow client cannot hold a
connection for ever once its head is in (the head has its own timer: :mod:`darkroom.api.server`).
Once the body is complete, ``receive`` is left alone: a long poll waits on it for the client's
disconnect.

Routes that carry source images (the OpenAI edits, multipart, and generations, whose ``image``
may be base64) take ``Settings.upload_max_bytes``; every other route
``Settings.http_body_max_bytes``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from darkroom.api import errors
from darkroom.core.errors import BodyTimeout, BodyTooLarge, DomainError


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
        self,
        app: ASGIApp,
        *,
        limit: int,
        upload_limit: int,
        upload_paths: Collection[str],
        stall_seconds: float,
    ) -> None:
        self.app = app
        self.stall_seconds = stall_seconds
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
            await errors.refuse_and_close(scope, receive, send, BodyTooLarge(limit))
            return
        received = 0
        body_done = False
        refused: DomainError | None = None
        started = False

        async def counted_receive() -> Message:
            nonlocal received, body_done, refused
            if body_done:
                return await receive()  # e.g. a long poll waiting for the client to go away
            try:
                message = await asyncio.wait_for(receive(), self.stall_seconds)
            except TimeoutError:
                refused = BodyTimeout(self.stall_seconds)
                raise refused from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > limit:
                    refused = BodyTooLarge(limit)
                    raise refused
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused is not None:
                return  # the answer is the refusal below, whatever the route made of its read
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if refused is None:
                raise
        if refused is not None and not started:
            await errors.refuse_and_close(scope, receive, send, refused)
