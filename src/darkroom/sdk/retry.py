"""When to try a request again, and how long to wait first."""

from __future__ import annotations

import random
from dataclasses import dataclass

from darkroom.sdk.errors import (
    APIConnectionError,
    APIStatusError,
    DarkroomError,
    DownloadError,
    RateLimitError,
    ServerError,
    retry_after,
)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: before retry ``n`` (from 0) wait a random time between
    half and all of ``min(max_delay, initial_delay * 2**n)``, or what the server's
    ``Retry-After`` asks (up to ``max_retry_after`` seconds; a longer ask is not retried)."""

    max_retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0

    def delay(self, error: DarkroomError, attempt: int) -> float | None:
        """Seconds to wait before retrying after ``error`` on attempt ``attempt`` (from 0), or
        None when it must not be retried."""
        if not retryable(error):
            return None
        if isinstance(error, APIStatusError):
            asked = retry_after(error.headers)
            if asked is not None:
                if asked > self.max_retry_after:
                    return None
                return float(asked) * random.uniform(1.0, 1.1)
        ceiling = min(self.max_delay, self.initial_delay * 2.0**attempt)
        return ceiling * random.uniform(0.5, 1.0)


def retryable(error: DarkroomError) -> bool:
    """Connection failures, 408, 429 and 5xx, unless the server said not to retry; and a
    download that failed verification."""
    if isinstance(error, APIConnectionError):
        return True
    if isinstance(error, DownloadError):
        return error.retryable
    if not isinstance(error, APIStatusError):
        return False
    if error.headers.get("x-should-retry", "").lower() == "false":
        return False
    return isinstance(error, RateLimitError | ServerError) or error.status_code == 408
