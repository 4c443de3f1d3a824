"""One tree of domain errors, each with a stable ``code``.

The core raises these; each HTTP dialect maps them to a status and a body shape in one handler.
They are the server's: a client's errors are the SDK's own tree, under ``darkroom.DarkroomError``.

    DomainError
    ├── InvalidRequest        a field is malformed or has a value we do not accept (``field``)
    ├── Unauthorized          no key, an unknown key, or a revoked key
    ├── InsufficientCredits   the account cannot pay for the request; nothing was charged
    ├── TierForbidden         the model or resolution is not available on the account's tier
    ├── NotFound              no such resource for this account
    ├── LinkRefused           a download link with a bad signature or past its expiry
    ├── Gone                  the images were deleted by the retention policy
    ├── IdempotencyConflict   an Idempotency-Key was reused with a different request
    ├── AlreadyEnded          the project already ended, so it cannot be canceled
    ├── RateLimited           too many requests; ``retry_after`` seconds
    │   └── QueueFull         too many projects waiting to render (account or everyone)
    ├── DatabaseBusy          the database stayed locked through the request's retries
    │   └── DatabaseUnavailable   ... or unreachable (down, restarting, connection lost)
    ├── StorageUnavailable    the object storage failed a read; ``retry_after`` seconds
    ├── BodyTooLarge          the request body is over the limit; nothing was read further
    ├── ConnectionsFull       the process holds its most connections; ``retry_after`` seconds
    └── JobNotDone            a caller waited for a job that did not give images (sync APIs)
        ├── JobFailed         the job ended in error (``code`` is the job's); refunded
        ├── JobCanceled       the job was canceled meanwhile; refunded
        └── JobTimedOut       the wait limit passed; the job was canceled and refunded
"""

from __future__ import annotations

from collections.abc import Iterable


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(DomainError):
    code = "invalid_request"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Unauthorized(DomainError):
    code = "unauthorized"

    def __init__(self, message: str = "Unauthorized") -> None:
        super().__init__(message)


class InsufficientCredits(DomainError):
    code = "insufficient_credits"

    def __init__(self, required: int, balance: int) -> None:
        super().__init__(
            f"Not enough credits: this request costs {required} credits and the balance is "
            f"{balance}. Nothing was charged."
        )
        self.required = required
        self.balance = balance


class TierForbidden(DomainError):
    code = "tier_forbidden"


class NotFound(DomainError):
    code = "not_found"

    def __init__(self, message: str = "Not Found") -> None:
        super().__init__(message)


class IdempotencyConflict(DomainError):
    code = "idempotency_conflict"


class AlreadyEnded(DomainError):
    code = "project_ended"


class WebhookDisabled(DomainError):
    code = "webhook_disabled"


class RateLimited(DomainError):
    code = "rate_limited"

    def __init__(self, retry_after: float) -> None:
        super().__init__("Too many requests, slow down and retry later.")
        self.retry_after = retry_after


class QueueFull(RateLimited):
    """Backpressure: too many projects are waiting (the account's or everyone's)."""

    code = "queue_full"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(retry_after)
        self.message = message
        self.args = (message,)


class DatabaseBusy(DomainError):
    code = "database_busy"
    retry_after = 1.0

    def __init__(
        self, message: str = "The database is busy; nothing was changed. Try again shortly."
    ) -> None:
        super().__init__(message)


class DatabaseUnavailable(DatabaseBusy):
    code = "database_unavailable"
    retry_after = 2.0

    def __init__(self) -> None:
        super().__init__("The database is unavailable; try again shortly.")


class LinkRefused(DomainError):
    code = "link_refused"


class Gone(DomainError):
    code = "gone"


class StorageUnavailable(DomainError):
    code = "storage_unavailable"
    retry_after = 5.0

    def __init__(self) -> None:
        super().__init__("The image storage is not answering. Try again shortly.")


class BodyTooLarge(DomainError):
    code = "body_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The request body is larger than {limit} bytes ({limit / 1024 / 1024:g} MB), the "
            "limit of this route. Nothing was charged."
        )
        self.limit = limit


class BodyTimeout(DomainError):
    code = "body_timeout"

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"The request body stalled: no bytes of it arrived for {seconds:g} s. Nothing was "
            "charged."
        )


class ConnectionsFull(DomainError):
    code = "connections_full"
    retry_after = 1.0

    def __init__(self) -> None:
        super().__init__("The server holds as many connections as it may. Try again shortly.")


class JobNotDone(DomainError):
    code = "job_not_done"

    def __init__(self, message: str, project_id: str) -> None:
        super().__init__(message)
        self.project_id = project_id


class JobFailed(JobNotDone):
    def __init__(self, message: str, project_id: str, code: str) -> None:
        super().__init__(message, project_id)
        self.code = code


class JobCanceled(JobNotDone):
    code = "job_canceled"


class JobTimedOut(JobNotDone):
    code = "timeout"


def listing(names: Iterable[object]) -> str:
    """``'a', 'b', 'c'``: the accepted values, for a message."""
    return ", ".join(repr(n) for n in names)
