"""How errors leave the server: one status per domain error, and one body shape per dialect.

The Magic Hour dialect answers ``{"message": "..."}``; the OpenAI dialect answers
``{"error": {"message", "type", "param", "code"}}``. Every error, including malformed input,
unknown routes and unexpected failures, is JSON with a message, and bad input is never a 500.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from darkroom.core.errors import (
    AlreadyEnded,
    BodyTimeout,
    BodyTooLarge,
    ConnectionsFull,
    DatabaseBusy,
    DatabaseUnavailable,
    DomainError,
    Gone,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidRequest,
    JobCanceled,
    JobFailed,
    JobTimedOut,
    LinkRefused,
    NotFound,
    RateLimited,
    StorageUnavailable,
    TierForbidden,
    Unauthorized,
    WebhookDisabled,
)
from darkroom.core.outages import DatabaseFailure, cause, given_up, refusal

log = logging.getLogger("darkroom.api")

STATUS: dict[type[DomainError], int] = {
    InvalidRequest: 400,
    Unauthorized: 401,
    InsufficientCredits: 402,
    TierForbidden: 403,
    NotFound: 404,
    LinkRefused: 403,
    Gone: 410,
    IdempotencyConflict: 422,
    AlreadyEnded: 409,
    WebhookDisabled: 409,
    RateLimited: 429,
    JobFailed: 500,
    JobCanceled: 409,
    JobTimedOut: 504,
    DatabaseBusy: 503,
    StorageUnavailable: 503,
    BodyTooLarge: 413,
    BodyTimeout: 408,
    ConnectionsFull: 503,
}

# Failures that the same request would meet again: the OpenAI client is told not to retry them
# (it retries 409 and 5xx otherwise, and each retry would start and wait for another job).
_NO_RETRY = (JobTimedOut, JobCanceled)

# A dialect renders (status, error) into a response; the error is always a DomainError here.
Renderer = Callable[[int, DomainError], JSONResponse]


def status_of(error: DomainError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def _retry_after(error: DomainError) -> dict[str, str]:
    if isinstance(error, RateLimited | DatabaseBusy | StorageUnavailable | ConnectionsFull):
        return {"Retry-After": str(max(1, math.ceil(error.retry_after)))}
    return {}


def magichour_error(status: int, error: DomainError) -> JSONResponse:
    headers = _retry_after(error)
    return JSONResponse({"message": error.message}, status_code=status, headers=headers)


def openai_error(status: int, error: DomainError) -> JSONResponse:
    """OpenAI's error shape, with the type its clients expect for the status."""
    if status >= 500:
        kind = "server_error"
    elif status == 402:
        kind = "insufficient_quota"
    elif status == 403:
        kind = "permission_error"
    elif status == 429:
        kind = "requests"
    else:
        kind = "invalid_request_error"
    code = error.code
    if status == 401:
        code = "invalid_api_key"
    elif status == 429:
        code = "rate_limit_exceeded"
    headers = _retry_after(error)
    if isinstance(error, _NO_RETRY):
        headers["x-should-retry"] = "false"
    body = {
        "message": error.message,
        "type": kind,
        "param": error.field if isinstance(error, InvalidRequest) else None,
        "code": code,
    }
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def validation_message(errors: Sequence[Any]) -> tuple[str, str | None]:
    """A one-line message naming the first bad field, from pydantic's error list."""
    if not errors:
        return "Invalid request", None
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "Malformed JSON body", None
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    field = ".".join(loc) or None
    if field is None:
        if first.get("type") == "missing":
            return "Missing request body", None
        return f"Request body: {first.get('msg', 'invalid')}", None
    return f"{field}: {first.get('msg', 'invalid value')}", field


# Path prefixes answered in the OpenAI shape; every other path gets Magic Hour's.
OPENAI_PATHS = ("/v1/images/", "/api/images/", "/v1/models")
DIALECTS: Sequence[tuple[str, Renderer]] = [(prefix, openai_error) for prefix in OPENAI_PATHS]


def renderer_for_path(path: str, dialects: Sequence[tuple[str, Renderer]] = DIALECTS) -> Renderer:
    for prefix, renderer in dialects:
        if path.startswith(prefix):
            return renderer
    return magichour_error


def answer(path: str, error: DomainError) -> JSONResponse:
    """The error as the dialect of ``path`` answers it: for answers given outside the routes
    (by ASGI middleware, or by the HTTP server itself)."""
    return renderer_for_path(path)(status_of(error), error)


async def refuse_and_close(scope: Scope, receive: Receive, send: Send, error: DomainError) -> None:
    """Answer ``error`` in the dialect of the request's path and close the connection: for
    requests refused outside the routes (a body too large or stalled, the connection cap)."""
    response = answer(scope["path"], error)
    response.headers["connection"] = "close"
    await response(scope, receive, send)


def allowed_methods(request: Request) -> str:
    """Every method some route of this path takes (Starlette's 405 names only the first route
    that matched the path, so GET /x and DELETE /x would say ``GET, HEAD``)."""
    methods: set[str] = set()
    for route in _routes(request.app.router.routes):
        match, _ = route.matches(request.scope)
        if match is not Match.NONE and route.methods:
            methods |= route.methods
    return ", ".join(sorted(methods))


def _routes(routes: Iterable[Any]) -> Iterator[Route]:
    """Every route, those of included routers too."""
    for route in routes:
        if isinstance(route, Route):
            yield route
        elif hasattr(route, "original_router"):  # FastAPI's include_router
            yield from _routes(route.original_router.routes)
        elif hasattr(route, "routes"):
            yield from _routes(route.routes)


def install(app: FastAPI, dialects: Sequence[tuple[str, Renderer]] = DIALECTS) -> None:
    """Register the handlers; ``dialects`` maps a path prefix to its renderer (Magic Hour's
    shape is the default)."""

    def renderer_for(request: Request) -> Renderer:
        return renderer_for_path(request.url.path, dialects)

    def render(request: Request, error: DomainError) -> JSONResponse:
        return renderer_for(request)(status_of(error), error)

    async def on_domain(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainError)
        return render(request, exc)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message, field = validation_message(exc.errors())
        return render(request, InvalidRequest(message, field=field))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        error = NotFound() if exc.status_code == 404 else DomainError(str(exc.detail))
        response = renderer_for(request)(exc.status_code, error)
        if exc.headers:
            response.headers.update(exc.headers)
        if exc.status_code == 405:
            response.headers["Allow"] = allowed_methods(request)
        return response

    async def on_disconnect(request: Request, exc: Exception) -> JSONResponse:
        # The client went away mid-request: nobody will read an answer, and nothing was charged.
        log.debug("client disconnected during %s %s", request.method, request.url.path)
        return JSONResponse({"message": "Client disconnected"}, status_code=400)

    async def on_database(request: Request, exc: Exception) -> JSONResponse:
        # A lock held, or the server unreachable, for longer than the request's patience
        # (DARKROOM_DATABASE_REQUEST_SECONDS): the caller may retry.
        refused = refusal(exc)
        if refused is None:
            return await on_crash(request, exc)
        # Given up on at the request's deadline: the 503 was answered, and logged, by then.
        log.log(
            logging.DEBUG if given_up(exc) else logging.WARNING,
            "database %s on %s %s: %s",
            "unavailable" if isinstance(refused, DatabaseUnavailable) else "busy",
            request.method,
            request.url.path,
            cause(exc),
        )
        return render(request, refused)

    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return renderer_for(request)(500, DomainError("Internal server error"))

    app.add_exception_handler(DomainError, on_domain)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(ClientDisconnect, on_disconnect)
    app.add_exception_handler(DatabaseFailure, on_database)
    app.add_exception_handler(Exception, on_crash)
