"""The SDK's exceptions: one class per failure, each carrying what a caller needs to act on it.

DarkroomError
├── APIStatusError              the server answered with an error status (``status_code``,
│   │                           ``message``, ``body``, ``headers``)
│   ├── BadRequestError         400, 409, 422: the request itself is wrong; do not retry
│   ├── AuthenticationError     401: no key, an unknown key or a revoked key
│   ├── InsufficientCreditsError 402: the account cannot pay; nothing was charged
│   ├── ForbiddenTierError      403: the model or resolution needs a higher tier
│   ├── NotFoundError           404
│   ├── RateLimitError          429 (``retry_after`` seconds, when the server said)
│   └── ServerError             5xx
├── APIConnectionError          the server could not be reached, or the connection broke
│   └── APITimeoutError         one request took longer than its timeout
├── GenerateTimeoutError        ``generate``'s overall ``timeout`` passed (``project``)
├── JobFailedError              a project ended in error or canceled (``project``)
└── DownloadError               an output could not be downloaded or failed verification
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from darkroom.sdk.types import ImageProject


class DarkroomError(Exception):
    """Every error the SDK raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class APIStatusError(DarkroomError):
    status_code: int

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body
        self.headers = {key.lower(): value for key, value in (headers or {}).items()}

    def __str__(self) -> str:
        return f"{self.status_code}: {self.message}"


class BadRequestError(APIStatusError):
    pass


class AuthenticationError(APIStatusError):
    pass


class InsufficientCreditsError(APIStatusError):
    pass


class ForbiddenTierError(APIStatusError):
    pass


class NotFoundError(APIStatusError):
    pass


class RateLimitError(APIStatusError):
    @property
    def retry_after(self) -> float | None:
        return retry_after(self.headers)


class ServerError(APIStatusError):
    pass


class APIConnectionError(DarkroomError):
    pass


class APITimeoutError(APIConnectionError, TimeoutError):
    pass


class GenerateTimeoutError(DarkroomError, TimeoutError):
    """The project was not done within ``generate``'s ``timeout``. It is left as it was (still
    charged and rendering); ``project`` is its last known state."""

    def __init__(self, message: str, project: ImageProject) -> None:
        super().__init__(message)
        self.project = project


class JobFailedError(DarkroomError):
    """Raised by :meth:`ImageProject.raise_for_status` for a project in ``error`` or
    ``canceled`` (its credits were refunded)."""

    def __init__(self, message: str, project: ImageProject) -> None:
        super().__init__(message)
        self.project = project
        self.code = project.error.code if project.error else project.status


class DownloadError(DarkroomError):
    def __init__(self, message: str, url: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.url = url
        self.retryable = retryable


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: ForbiddenTierError,
    404: NotFoundError,
    409: BadRequestError,
    422: BadRequestError,
    429: RateLimitError,
}


def error_for(status_code: int, body: Any, headers: Mapping[str, str]) -> APIStatusError:
    """The exception for an error answer; ``body`` is the parsed JSON (or the text)."""
    kind = _BY_STATUS.get(status_code)
    if kind is None:
        kind = ServerError if status_code >= 500 else APIStatusError
    return kind(message_of(body, status_code), status_code=status_code, body=body, headers=headers)


def message_of(body: Any, status_code: int) -> str:
    """The message of either dialect's error body: ``{"message"}`` (Magic Hour) or
    ``{"error": {"message"}}`` (OpenAI)."""
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(body.get("message"), str):
            return str(body["message"])
    if isinstance(body, str) and body.strip():
        return body.strip()[:500]
    return f"HTTP {status_code}"


def retry_after(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds (either delta-seconds or an HTTP date), or None."""
    value = {key.lower(): v for key, v in headers.items()}.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
