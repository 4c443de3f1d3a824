"""An account's usage over a time range ``[from, to)``: its ledger entries (newest first, a page
at a time) and totals over the whole range, per model and overall.

Entries count where they fall in time: a project charged inside the range and refunded after it
shows the charge only. ``from`` and ``to`` are ISO 8601 dates (midnight UTC) or datetimes (a
datetime without a zone is UTC); by default the range is the last 30 days up to now.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row

from darkroom.core.errors import InvalidRequest
from darkroom.store import usage as sql
from darkroom.store.database import Database, as_utc, utcnow

DEFAULT_SPAN = timedelta(days=30)
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# The ledger's ids are INTEGER: 32 bits on PostgreSQL, where a larger one cannot be compared.
MAX_ENTRY_ID = 2**31 - 1


def parse_time(value: str, param: str) -> datetime:
    """An ISO 8601 date or datetime as an aware UTC datetime, or a 400 naming ``param``."""
    try:
        return as_utc(datetime.fromisoformat(value.strip())).astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidRequest(
            f"{param} must be an ISO 8601 date or datetime (2026-11-01 or "
            f"2026-11-01T12:00:00Z), not {value!r}",
            field=param,
        ) from None


def time_range(
    start: str | None, end: str | None, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """The range ``[from, to)`` asked for: ``to`` defaults to now, ``from`` to 30 days before
    ``to``."""
    stop = parse_time(end, "to") if end else (now or utcnow())
    if start:
        begin = parse_time(start, "from")
    elif stop - datetime.min.replace(tzinfo=UTC) > DEFAULT_SPAN:
        begin = stop - DEFAULT_SPAN
    else:
        raise InvalidRequest("to is too early for the default from: give from as well", "from")
    if begin >= stop:
        raise InvalidRequest(
            f"from ({begin.isoformat()}) must be before to ({stop.isoformat()})", field="from"
        )
    return begin, stop


def entry_body(row: Row) -> dict[str, Any]:  # type: ignore[type-arg]
    """One ledger entry as JSON (with its project's ``model`` when the row carries one)."""
    body = {
        "id": row.id,
        "kind": row.kind,
        "amount": row.amount,
        "balance_after": row.balance_after,
        "project_id": row.project_id,
        "note": row.note,
        "created_at": as_utc(row.created_at).isoformat(),
    }
    if "model" in row._fields:
        body["model"] = row.model
    return body


def report(
    db: Database,
    account_id: str,
    *,
    start: str | None = None,
    end: str | None = None,
    limit: int | None = None,
    before: int | None = None,
    operator: bool = False,
) -> dict[str, Any]:
    """The usage of ``account_id`` (which the caller knows exists) for the query parameters
    ``from``, ``to``, ``limit`` and ``before`` (an entry id: the page after the one that ended
    there). For the ``operator``, each model also says what the vendors counted for the
    projects rendered through their APIs (``upstream``: tokens and images)."""
    begin, stop = time_range(start, end)
    limit = DEFAULT_LIMIT if limit is None else limit
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    if before is not None and not 1 <= before <= MAX_ENTRY_ID:
        raise InvalidRequest("before must be a ledger entry id (a positive number)", field="before")
    with db.read() as conn:
        rows = sql.entries(conn, account_id, begin, stop, limit=limit + 1, before=before)
        models = sql.by_model(conn, account_id, begin, stop)
        kinds = {row.kind: row for row in sql.by_kind(conn, account_id, begin, stop)}
    page = rows[:limit]
    per_model: dict[str, dict[str, Any]] = {
        row.model: {
            "projects": int(row.projects),
            "projects_refunded": int(row.projects_refunded),
            "images": int(row.images),
            "credits_charged": int(row.credits_charged),
            "credits_refunded": int(row.credits_refunded),
            "net": int(row.credits_charged) - int(row.credits_refunded),
        }
        for row in models
    }
    if operator:
        for row in models:
            per_model[row.model]["upstream"] = {
                "input_tokens": int(row.upstream_input_tokens),
                "output_tokens": int(row.upstream_output_tokens),
                "images": int(row.upstream_images),
            }

    def amount(kind: str) -> int:
        return int(kinds[kind].amount) if kind in kinds else 0

    charged, refunded = -amount("charge"), amount("refund")
    return {
        "account_id": account_id,
        "from": begin.isoformat(),
        "to": stop.isoformat(),
        "totals": {
            "entries": sum(int(row.entries) for row in kinds.values()),
            "projects": sum(m["projects"] for m in per_model.values()),
            "images": sum(m["images"] for m in per_model.values()),
            "credits_granted": amount("grant"),
            "credits_charged": charged,
            "credits_refunded": refunded,
            "net": charged - refunded,
            "balance_change": amount("grant") - charged + refunded,
        },
        "models": per_model,
        "entries": [entry_body(row) for row in page],
        "has_more": len(rows) > limit,
        "next_before": page[-1].id if len(rows) > limit else None,
    }
