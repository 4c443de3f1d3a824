"""SQL for an account's usage over a time range: its ledger entries, page by page, and totals
aggregated by the database (per model through the charged projects, and per entry kind).

Every query takes ``start <= created_at < end`` (UTC datetimes) on the account's ledger rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, case, func, select

from darkroom.store.tables import ledger, projects


def _in_range(account_id: str, start: datetime, end: datetime) -> list[Any]:
    return [
        ledger.c.account_id == account_id,
        ledger.c.created_at >= start,
        ledger.c.created_at < end,
    ]


def entries(
    conn: Connection,
    account_id: str,
    start: datetime,
    end: datetime,
    *,
    limit: int,
    before: int | None = None,
) -> list[Row]:  # type: ignore[type-arg]
    """Up to ``limit`` entries, newest first (by id), with the model of their project; only
    those with an id below ``before`` when given."""
    conditions = _in_range(account_id, start, end)
    if before is not None:
        conditions.append(ledger.c.id < before)
    query = (
        select(ledger, projects.c.model)
        .outerjoin(projects, projects.c.id == ledger.c.project_id)
        .where(*conditions)
        .order_by(ledger.c.id.desc())
        .limit(limit)
    )
    return list(conn.execute(query))


def _sum_when(kind: str, value: Any) -> Any:
    return func.coalesce(func.sum(case((ledger.c.kind == kind, value), else_=0)), 0)


def by_model(conn: Connection, account_id: str, start: datetime, end: datetime) -> list[Row]:  # type: ignore[type-arg]
    """Per model: projects charged and refunded, images charged for (the charged projects'
    ``image_count``), credits charged and refunded (both positive)."""
    query = (
        select(
            projects.c.model,
            _sum_when("charge", 1).label("projects"),
            _sum_when("refund", 1).label("projects_refunded"),
            _sum_when("charge", projects.c.image_count).label("images"),
            _sum_when("charge", -ledger.c.amount).label("credits_charged"),
            _sum_when("refund", ledger.c.amount).label("credits_refunded"),
            # What vendors counted for the projects rendered through their APIs (the operator's
            # cost side of the margin).
            _sum_when("charge", func.coalesce(projects.c.upstream_input_tokens, 0)).label(
                "upstream_input_tokens"
            ),
            _sum_when("charge", func.coalesce(projects.c.upstream_output_tokens, 0)).label(
                "upstream_output_tokens"
            ),
            _sum_when("charge", func.coalesce(projects.c.upstream_images, 0)).label(
                "upstream_images"
            ),
        )
        .select_from(ledger.join(projects, projects.c.id == ledger.c.project_id))
        .where(*_in_range(account_id, start, end), ledger.c.kind.in_(("charge", "refund")))
        .group_by(projects.c.model)
        .order_by(projects.c.model)
    )
    return list(conn.execute(query))


def by_kind(conn: Connection, account_id: str, start: datetime, end: datetime) -> list[Row]:  # type: ignore[type-arg]
    """Per entry kind (grant, charge, refund): how many entries and their signed sum."""
    query = (
        select(
            ledger.c.kind,
            func.count().label("entries"),
            func.coalesce(func.sum(ledger.c.amount), 0).label("amount"),
        )
        .where(*_in_range(account_id, start, end))
        .group_by(ledger.c.kind)
    )
    return list(conn.execute(query))
