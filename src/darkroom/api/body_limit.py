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
may be base64) take ``Settings.source_body_max_bytes``; the upload URLs darkroom takes PUTs on
(``/v1/files/uploads/...``) ``Settings.upload_max_bytes``; every other route
``Settings.http_body_max_bytes``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping

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
        source_limit: int,
        source_paths: Collection[str],
        stall_seconds: float,
        prefix_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.stall_seconds = stall_seconds
        self.limit = limit
        self.source_limit = source_limit
        self.source_paths = frozenset(source_paths)
        self.prefix_limits = dict(prefix_limits or {})

    def limit_for(self, path: str) -> int:
        if path in self.source_paths:
            return self.source_limit
        for prefix, limit in self.prefix_limits.items():
            if path.startswith(prefix):
                return limit
        return self.limit

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
