"""What a database that does not answer means to the caller of a request.

Each HTTP request runs within ``DARKROOM_DATABASE_REQUEST_SECONDS`` of patience (a
:class:`Deadline`, set for the request by ``deadline_at``), so a database that stays locked or
unreachable answers 503 with Retry-After in a few seconds (:func:`refusal`) instead of holding
the caller for the minute the background loops wait it out.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

from darkroom.core.errors import DatabaseBusy, DatabaseUnavailable
from darkroom.store.database import is_transient, is_unreachable
from darkroom.store.deadline import Deadline, GaveUp, deadline_at

# The database driver's failures, as SQLAlchemy raises them (what :func:`refusal` judges).
DatabaseFailure = DBAPIError

__all__ = ["DatabaseFailure", "Deadline", "cause", "deadline_at", "given_up", "refusal"]


def refusal(exc: BaseException) -> DatabaseBusy | None:
    """The 503 a failure of the database is for the caller (busy: a lock held too long;
    unavailable: down, restarting, the connection lost), or None when it is not one a retry
    could cure (a bug: a 500)."""
    if not is_transient(exc):
        return None
    return DatabaseUnavailable() if is_unreachable(exc) else DatabaseBusy()


def given_up(exc: BaseException) -> bool:
    """Whether the failure is the request's own deadline giving its call up (the 503 was
    answered, and logged, when it passed)."""
    return isinstance(getattr(exc, "orig", None), GaveUp)


def cause(exc: BaseException) -> str:
    """The driver's name for the failure, for a log line."""
    return type(getattr(exc, "orig", None) or exc).__name__
