"""A node's start-up as a cluster meets it: a database that does not answer yet (started beside
the node, still starting up, or restarting) is waited for, within a bound, before the node
migrates and serves; past the bound the node stops with one line that names the database (never
its password)."""

from __future__ import annotations

import logging
import time

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from darkroom.core.errors import DomainError
from darkroom.store.database import Database, is_unreachable

log = logging.getLogger("darkroom.database")

LOG_EVERY_SECONDS = 5.0  # one line this often while waiting
RETRY_SECONDS = 0.5  # between two tries


class StartupError(DomainError):
    """The node cannot start: the message is the one line the command prints (exit status 1)."""


def shown_url(url: str) -> str:
    """``url`` as it may be printed and logged: without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: say nothing of what it holds
        return "(the configured DARKROOM_DATABASE_URL)"


def wait_for_database(db: Database, seconds: float) -> None:
    """Return once ``db`` answers. While its server cannot be reached (refused, down, starting
    up), try again for up to ``seconds``, logging a line every few seconds; then, or at once for
    any other error (a wrong password, no such database), raise :class:`StartupError`. SQLite
    is a file: nothing to wait for."""
    if db.is_sqlite:
        return
    started = time.monotonic()
    deadline = started + seconds
    logged_at: float | None = None
    while True:
        try:
            with db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except DBAPIError as exc:
            now = time.monotonic()
            reason = _reason(exc, db.url)
            if not is_unreachable(exc):
                raise StartupError(
                    f"cannot use the database at {shown_url(db.url)}: {reason}"
                ) from None
            if now >= deadline:
                raise StartupError(
                    f"the database at {shown_url(db.url)} did not answer within {seconds:g} s "
                    f"(DARKROOM_DATABASE_START_SECONDS): {reason}"
                ) from None
            if logged_at is None or now - logged_at >= LOG_EVERY_SECONDS:
                log.warning(
                    "waiting for the database at %s (%s); giving up in %.0f s",
                    shown_url(db.url),
                    reason,
                    deadline - now,
                )
                logged_at = now
            time.sleep(min(RETRY_SECONDS, max(0.0, deadline - now)))
            continue
        if logged_at is not None:
            log.info("the database answered after %.1f s", time.monotonic() - started)
        return


def _reason(exc: DBAPIError, url: str) -> str:
    """The driver's first line about the failure (libpq's never holds the password; it is
    taken out all the same, should a driver echo its URL)."""
    lines = str(exc.orig).strip().splitlines() or [type(exc.orig).__name__]
    reason = lines[0]
    password = _password(url)
    return reason.replace(password, "***") if password else reason


def _password(url: str) -> str | None:
    try:
        return make_url(url).password
    except Exception:
        return None
