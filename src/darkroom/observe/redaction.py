"""Secrets a request carries, hidden from whatever observes it from outside darkroom's own code.

FastAPI records a span for every request as soon as an OpenTelemetry tracer provider exists
(and OpenTelemetry's ASGI instrumentation, when an operator adds it, does the same): with the
request's query string as ``url.query``, which for a signed download link is the live HMAC
signature, and (if configured to capture headers) its ``Authorization``. Both are read from the
ASGI scope before any of darkroom's middleware runs. So :class:`SpanSafeFastAPI` replaces them in
the scope before FastAPI sees the request: the values of signature-like query parameters and of
credential headers become ``REDACTED``. :class:`RevealSecrets`, the outermost of darkroom's
middleware, puts the originals back for the routes, which need them. Nothing secret reaches a
span, whoever makes it, and the routes work as before.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

REDACTED = "REDACTED"
# Query parameters that authorize by themselves: darkroom's signed links (``signature``), and
# the presigned URLs of S3 and GCS should one pass through, and the usual names of a key or token.
SECRET_PARAMETERS = frozenset(
    {
        "signature",
        "sig",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
        "token",
        "access_token",
        "api_key",
        "key",
    }
)
SECRET_HEADERS = frozenset({b"authorization", b"proxy-authorization", b"cookie", b"x-api-key"})
_HIDDEN = "darkroom.hidden"  # the scope key under which the originals wait for RevealSecrets


def redact_query(query: bytes) -> bytes | None:
    """``query`` with the values of :data:`SECRET_PARAMETERS` replaced, or None if it has none."""
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    if not any(name.lower() in SECRET_PARAMETERS for name, _ in pairs):
        return None
    safe = [(n, REDACTED if n.lower() in SECRET_PARAMETERS else v) for n, v in pairs]
    return urlencode(safe).encode("latin-1")


def hide(scope: Scope) -> None:
    """Replace the secrets of ``scope`` (an HTTP request's), keeping the originals in it."""
    query: bytes = scope.get("query_string", b"")
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    safe_query = redact_query(query) if query else None
    secret_header = any(name in SECRET_HEADERS for name, _ in headers)
    if safe_query is None and not secret_header:
        return
    scope[_HIDDEN] = (query, headers)
    if safe_query is not None:
        scope["query_string"] = safe_query
    if secret_header:
        scope["headers"] = [
            (name, REDACTED.encode() if name in SECRET_HEADERS else value)
            for name, value in headers
        ]


def reveal(scope: Scope) -> None:
    """Put back what :func:`hide` replaced."""
    hidden = scope.pop(_HIDDEN, None)
    if hidden is not None:
        scope["query_string"], scope["headers"] = hidden


class SpanSafeFastAPI(FastAPI):
    """darkroom's FastAPI application: each request's secrets hidden before FastAPI (and its
    telemetry) sees the request; :class:`RevealSecrets` must be its outermost middleware."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            hide(scope)
        await super().__call__(scope, receive, send)


class RevealSecrets:
    """The outermost middleware: the request as the client sent it, from here on in."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reveal(scope)
        await self.app(scope, receive, send)
