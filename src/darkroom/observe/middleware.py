"""Request ids, access lines and request metrics, as pure ASGI middleware: the response passes
through untouched and unbuffered (long polls, streamed events and file downloads included).

Each request runs with a request id: the caller's ``X-Request-Id`` when it is sane (up to 64 of
``A-Z a-z 0-9 . _ -``, what a project can store), otherwise a new ``req_...``. It is set for the
request's log lines (and stored on a project the request creates, for the job's lines) and
returned in the ``x-request-id`` header of every answer, errors included. One access line per
request names the method, the route template (or the path, without its query string, when no
route matched), the status and the duration; never a header or a query string.
"""

from __future__ import annotations

import inspect
import logging
import re
import secrets
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from darkroom.core.request_ids import request_context
from darkroom.observe.metrics import Metrics

log = logging.getLogger("darkroom.access")

HEADER = b"x-request-id"
MAX_LENGTH = 64  # the projects.request_id column
_SANE = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_LENGTH}}}")
UNMATCHED = "unmatched"  # the route label of a request that matched no route (a 404)
CLOSED = 499  # the status logged when the caller left before any answer was sent


def request_id_from(value: bytes | None) -> str:
    """The caller's request id if it is sane, otherwise a new one."""
    if value is not None:
        text = value.decode("latin-1")
        if _SANE.fullmatch(text):
            return text
    return "req_" + secrets.token_hex(12)


def route_of(scope: Scope) -> str | None:
    """The template of the route that served the request (``/v1/image-projects/{project_id}``),
    or None if none matched."""
    route = scope.get("route")
    if route is None and "endpoint" in scope:  # Starlette's own routes (/docs, /openapi.json)
        app: Any = scope.get("app")
        routes = getattr(getattr(app, "router", None), "routes", [])
        route = next((r for r in routes if getattr(r, "endpoint", None) is scope["endpoint"]), None)
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else None


def _printable(path: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in path[:200])


class RequestMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k.lower() == HEADER), None)
        request_id = request_id_from(given)
        status = CLOSED
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, request_id.encode())]}
            await send(message)

        with request_context(request_id):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception as exc:
                if status != CLOSED:
                    raise  # the answer has begun: nothing more can be said to the caller
                # Answer here, inside the request's context and with its id, what Starlette's
                # outermost error middleware would otherwise answer without either.
                response = await _crash_response(scope, exc)
                await response(scope, receive, send_with_id)
            finally:
                seconds = time.perf_counter() - started
                self._finish(scope, status, seconds)

    def _finish(self, scope: Scope, status: int, seconds: float) -> None:
        route = route_of(scope)
        self.metrics.request(scope["method"], route or UNMATCHED, status, seconds)
        if not log.isEnabledFor(logging.INFO):
            return
        extra: dict[str, Any] = {
            "method": scope["method"],
            "route": route or _printable(scope["path"]),
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
        }
        project_id = (scope.get("path_params") or {}).get("project_id")
        if project_id is not None:
            extra["project_id"] = project_id
        log.info(
            "%s %s %d %.1f ms",
            extra["method"],
            extra["route"],
            status,
            extra["duration_ms"],
            extra=extra,
        )


async def _crash_response(scope: Scope, exc: Exception) -> Response:
    """The app's answer to an unhandled exception: its ``Exception`` handler's (which logs it),
    or a plain 500."""
    handler = getattr(scope.get("app"), "exception_handlers", {}).get(Exception)
    if handler is None:
        log.error("unhandled error", exc_info=exc)
        return PlainTextResponse("Internal Server Error", status_code=500)
    response = handler(Request(scope), exc)
    if inspect.isawaitable(response):
        response = await response
    assert isinstance(response, Response)
    return response
