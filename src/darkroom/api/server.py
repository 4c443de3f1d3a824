"""darkroom's HTTP server: uvicorn, set up against slow and greedy clients.

uvicorn alone waits for ever on a connection that sends half a request head and stops (its
keep-alive timer stops at the first byte), and answers 503 beyond ``limit_concurrency`` in plain
text. Its two HTTP/1.1 protocols (httptools, which ``http="auto"`` picks when installed, and h11)
are subclassed here, and the class is given to ``uvicorn.Config(http=...)``:

- **Head timeout.** A request head (request line and headers) not complete within
  ``http_head_timeout_seconds`` of the connection opening, or of the request's first byte on a
  kept-alive connection, closes the connection. An idle kept-alive connection is still closed by
  uvicorn's keep-alive timeout (5 s).
- **Head size.** A head over :data:`MAX_HEAD_BYTES` is answered 400 and the connection closed
  (httptools has no limit of its own; h11 applies it, as its own, to a head still incomplete).
- **Connection cap.** A request on a connection beyond ``http_max_connections`` (or while as many
  requests are in flight) is answered 503 with ``Retry-After`` in the dialect's JSON shape, and
  the connection closed. ``darkroom serve`` raises the descriptor limit so that this cap, not
  the kernel's refusal to accept, is what binds (:func:`raise_descriptor_limit`).

``darkroom serve`` and the tests' server both build their ``uvicorn.Config`` with
:func:`config_for`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import h11
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from darkroom.api import errors
from darkroom.core.errors import ConnectionsFull
from darkroom.settings import Settings

log = logging.getLogger("darkroom.server")

MAX_HEAD_BYTES = 64 * 1024  # request line and headers together
DESCRIPTOR_HEADROOM = 256  # the process's own files: database, images, logs, listening sockets
_WARN_EVERY = 10.0  # seconds between two warnings that the connection cap is reached


class HeadTooLarge(Exception):
    """Raised from a parser callback: httptools turns it into a 400 and closes."""


class HeadTimer:
    """Closes a connection whose request head is not complete by a deadline."""

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        self.loop = loop
        self.seconds = seconds
        self.transport: asyncio.BaseTransport | None = None
        self.handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Arm the deadline, unless it is armed already (a head's deadline never moves)."""
        if self.handle is None:
            self.handle = self.loop.call_later(self.seconds, self._expire)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _expire(self) -> None:
        self.handle = None
        if self.transport is not None and not self.transport.is_closing():
            log.debug("closing a connection whose request head took over %gs", self.seconds)
            self.transport.close()


class Limits:
    """The connection cap and the head timer, shared by both protocols."""

    max_connections: int
    head_timeout: float
    connections: set[Any]
    tasks: set[Any]
    loop: asyncio.AbstractEventLoop
    _warned = 0.0

    app: Any  # the ASGI app that uvicorn's protocol starts a request's task with

    def arm_head_timer(self, transport: asyncio.Transport) -> None:
        """On a new connection: its first head is due within the head timeout."""
        self.head_timer = HeadTimer(self.loop, self.head_timeout)
        self.head_timer.transport = transport
        self.head_timer.start()

    def start_or_refuse(self, parse: Callable[[], None]) -> None:
        """Run uvicorn's ``parse`` step, which starts the task of a request whose head it
        completes: with :func:`connections_full` as the app when beyond the cap."""
        # ``connections`` includes this one; ``tasks`` does not yet include its request.
        full = len(self.connections) > self.max_connections
        if not full and len(self.tasks) < self.max_connections:
            parse()
            return
        now = time.monotonic()
        if now - Limits._warned >= _WARN_EVERY:
            Limits._warned = now
            log.warning(
                "connection cap reached (%d, DARKROOM_HTTP_MAX_CONNECTIONS): answering 503",
                self.max_connections,
            )
        app, self.app = self.app, connections_full
        try:
            parse()
        finally:
            self.app = app


async def connections_full(scope: Scope, receive: Receive, send: Send) -> None:
    """The answer to a request beyond the connection cap."""
    await errors.refuse_and_close(scope, receive, send, ConnectionsFull())


class H11HeadLimits(H11Protocol, Limits):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.arm_head_timer(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.head_timer.stop()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        self.start_or_refuse(super().handle_events)
        if self.conn.their_state is h11.IDLE:
            if self.conn.trailing_data[0]:  # a head has begun, and is not complete
                self.head_timer.start()
        else:
            self.head_timer.stop()


def _httptools_base() -> type[asyncio.Protocol] | None:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools is not installed: h11 serves
        return None
    return HttpToolsProtocol


def _httptools_class() -> type[asyncio.Protocol] | None:
    base: Any = _httptools_base()
    if base is None:
        return None

    class HttpToolsHeadLimits(base, Limits):  # type: ignore[misc]
        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self.head_bytes = 0
            self.arm_head_timer(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            self.head_timer.stop()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:  # a request's first byte
            self.head_bytes = 0
            self.head_timer.start()
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def _count(self, size: int) -> None:
            self.head_bytes += size
            if self.head_bytes > MAX_HEAD_BYTES:
                raise HeadTooLarge

        def on_headers_complete(self) -> None:
            self.head_timer.stop()
            self.start_or_refuse(super().on_headers_complete)

    return HttpToolsHeadLimits


def protocol_for(settings: Settings, *, http: str = "auto") -> type[asyncio.Protocol]:
    """The HTTP protocol class with ``settings``' limits: httptools when installed (what
    uvicorn's ``auto`` picks), else h11; ``http="h11"`` forces h11."""
    base = _httptools_class() if http == "auto" else None
    if base is None:
        base = H11HeadLimits
    attributes = {
        "head_timeout": settings.http_head_timeout_seconds,
        "max_connections": settings.http_max_connections,
    }
    return type(base.__name__, (base,), attributes)


def config_for(
    app: ASGIApp, settings: Settings, *, http: str = "auto", **options: Any
) -> uvicorn.Config:
    """uvicorn's configuration for serving ``app`` with ``settings``' limits; ``options`` are
    uvicorn's own (host, port, log_level, ...)."""
    return uvicorn.Config(
        app,
        http=protocol_for(settings, http=http),
        limit_concurrency=None,  # the protocol answers beyond the cap, in darkroom's shape
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        **options,
    )


def raise_descriptor_limit(connections: int) -> int:
    """Raise this process's soft limit on open files (RLIMIT_NOFILE) toward the hard limit, so
    that ``connections`` client sockets fit beside the process's own files; the limit now. A
    warning says so when the hard limit is too low: beyond it the kernel refuses connections
    before darkroom can answer them."""
    try:
        import resource
    except ImportError:  # not on a POSIX system
        return -1
    wanted = connections + DESCRIPTOR_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open files limit to %d: %s", target, exc)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warning(
            "the open files limit (%d) is below DARKROOM_HTTP_MAX_CONNECTIONS (%d) plus %d for "
            "the process's own files: beyond it connections are refused by the kernel instead of "
            "answered 503. Raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower the cap.",
            soft,
            connections,
            DESCRIPTOR_HEADROOM,
        )
    return int(soft)
