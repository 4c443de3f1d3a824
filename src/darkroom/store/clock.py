"""The database's clock: the one time that every node of a cluster agrees on.

Leases, heartbeats, "is that node gone" and expiries are compared by several processes, each on
its own machine, whose wall clocks may differ (a broken NTP, a VM restored from a snapshot). So
they are computed in the statement itself from the database's clock, never from a node's: on
PostgreSQL ``statement_timestamp()`` (the start of the statement, on the server), on SQLite
``'now'`` (the machine every process that opens the file runs on).

SQLite has no time type: SQLAlchemy stores a ``DateTime`` as text, ``YYYY-MM-DD HH:MM:SS.ffffff``
(UTC here), and compares it as text. So SQLite's time is produced in that same format (its
``%f`` gives milliseconds; three zeros make microseconds), and stored values compare with it
like with like.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, DateTime, Float, Interval, func, literal, select, type_coerce
from sqlalchemy.sql.elements import ColumnElement

_SQLITE_FORMAT = "%Y-%m-%d %H:%M:%f000"  # what SQLAlchemy stores for a DateTime


def now(conn: Connection, plus: float = 0.0) -> ColumnElement[datetime]:
    """The database's time now (``plus`` seconds later, or earlier when negative), as an SQL
    expression to store or compare."""
    if conn.dialect.name == "sqlite":
        args: list[Any] = [_SQLITE_FORMAT, "now"]
        if plus:
            args.append(f"{plus:+.6f} seconds")
        return type_coerce(func.strftime(*args), DateTime(timezone=True))
    stamp = func.statement_timestamp(type_=DateTime(timezone=True))
    if not plus:
        return stamp
    return stamp + literal(timedelta(seconds=plus), Interval())


def seconds_until(conn: Connection, moment: Any) -> ColumnElement[float]:
    """Seconds from the database's time now until ``moment`` (a column or an aggregate of one;
    negative once it has passed), as an SQL expression."""
    if conn.dialect.name == "sqlite":
        return type_coerce((func.julianday(moment) - func.julianday("now")) * 86400.0, Float())
    return type_coerce(func.extract("epoch", moment - func.statement_timestamp()), Float())


def read(conn: Connection) -> datetime:
    """The database's time now (UTC)."""
    value = conn.execute(select(now(conn))).scalar_one()
    if isinstance(value, str):  # SQLite, with no column type to tell SQLAlchemy to parse it
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def skew(conn: Connection) -> float:
    """Seconds by which this node's wall clock is ahead of the database's (behind: negative),
    measured against the middle of the round trip."""
    before = time.time()
    database = read(conn).timestamp()
    after = time.time()
    return (before + after) / 2 - database
