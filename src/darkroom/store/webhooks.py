"""SQL for webhook endpoints, their deliveries and each delivery's attempts.

When a delivery is due, whether a sender's lease on it holds, and how old it is are on the
database's clock (``store/clock.py``): senders whose clocks differ never take the same delivery
at once, nor expire one early."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, case, func, insert, literal, or_, select, update

from darkroom.store import clock
from darkroom.store.tables import webhook_attempts, webhook_deliveries, webhook_endpoints

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
CANCELED = "canceled"


def insert_endpoint(conn: Connection, **values: Any) -> None:
    conn.execute(insert(webhook_endpoints).values(**values))


def active_endpoints(conn: Connection, account_id: str) -> list[Row]:  # type: ignore[type-arg]
    """The account's endpoints that are not deleted, enabled or not."""
    query = select(webhook_endpoints).where(
        webhook_endpoints.c.account_id == account_id, webhook_endpoints.c.deleted_at.is_(None)
    )
    return list(conn.execute(query.order_by(webhook_endpoints.c.created_at)))


def set_disabled(conn: Connection, endpoint_id: str, disabled_at: datetime | None) -> None:
    """Disable the endpoint (from ``disabled_at``) or, with None, enable it again."""
    conn.execute(
        update(webhook_endpoints)
        .where(webhook_endpoints.c.id == endpoint_id)
        .values(disabled_at=disabled_at)
    )


def expire_pending(conn: Connection, endpoint_id: str, max_age: float, why: str) -> int:
    """Fail the endpoint's pending deliveries made more than ``max_age`` seconds ago; how
    many."""
    result = conn.execute(
        update(webhook_deliveries)
        .where(
            webhook_deliveries.c.endpoint_id == endpoint_id,
            webhook_deliveries.c.status == PENDING,
            webhook_deliveries.c.created_at < clock.now(conn, -max_age),
        )
        .values(status=FAILED, next_attempt_at=None, last_error=why)
    )
    return result.rowcount


def get_endpoint(conn: Connection, endpoint_id: str) -> Row | None:  # type: ignore[type-arg]
    query = select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
    return conn.execute(query).first()


def delete_endpoint(conn: Connection, endpoint_id: str, now: datetime) -> None:
    """Mark the endpoint deleted and cancel what it has still to receive."""
    conn.execute(
        update(webhook_endpoints)
        .where(webhook_endpoints.c.id == endpoint_id)
        .values(deleted_at=now)
    )
    conn.execute(
        update(webhook_deliveries)
        .where(
            webhook_deliveries.c.endpoint_id == endpoint_id,
            webhook_deliveries.c.status == PENDING,
        )
        .values(status=CANCELED, next_attempt_at=None)
    )


def existing_events(
    conn: Connection, project_id: str, event: str, endpoint_ids: list[str]
) -> set[str]:
    """The endpoints among ``endpoint_ids`` that already have this event about this project."""
    query = select(webhook_deliveries.c.endpoint_id).where(
        webhook_deliveries.c.project_id == project_id,
        webhook_deliveries.c.event == event,
        webhook_deliveries.c.endpoint_id.in_(endpoint_ids),
    )
    return set(conn.execute(query).scalars())


def insert_deliveries(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """New deliveries, made and due now."""
    if rows:
        now = clock.now(conn)
        conn.execute(insert(webhook_deliveries).values(created_at=now, next_attempt_at=now), rows)


def get_delivery(conn: Connection, delivery_id: str) -> Row | None:  # type: ignore[type-arg]
    query = select(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id)
    return conn.execute(query).first()


def deliveries_of(
    conn: Connection, endpoint_id: str, limit: int, status: str | None = None
) -> list[Row]:  # type: ignore[type-arg]
    query = select(webhook_deliveries).where(webhook_deliveries.c.endpoint_id == endpoint_id)
    if status is not None:
        query = query.where(webhook_deliveries.c.status == status)
    query = query.order_by(webhook_deliveries.c.created_at.desc(), webhook_deliveries.c.id.desc())
    return list(conn.execute(query.limit(limit)))


def attempts_of(conn: Connection, delivery_ids: list[str]) -> list[Row]:  # type: ignore[type-arg]
    if not delivery_ids:
        return []
    query = (
        select(webhook_attempts)
        .where(webhook_attempts.c.delivery_id.in_(delivery_ids))
        .order_by(webhook_attempts.c.id)
    )
    return list(conn.execute(query))


def due_ids(
    conn: Connection,
    limit: int,
    *,
    per_endpoint: int = 2**31 - 1,
    per_account: int = 2**31 - 1,
    held: Mapping[str, int] | None = None,
) -> list[str]:
    """Up to ``limit`` pending deliveries whose time has come, that no sender holds, to enabled
    endpoints, chosen fairly:

    - no endpoint gets more than ``per_endpoint`` in flight, counting the leases every sender
      holds (its oldest deliveries first);
    - the accounts take turns: each account's oldest delivery, then each one's second, and so
      on (so one account's backlog does not push another's first delivery back);
    - no account gets more than ``per_account`` less the sends this sender already has in
      flight for it (``held``, by account id).
    """
    d, e = webhook_deliveries, webhook_endpoints
    now = clock.now(conn)
    live = (
        select(d.c.endpoint_id, func.count().label("n"))
        .where(d.c.status == PENDING, d.c.lease_until >= now)
        .group_by(d.c.endpoint_id)
        .subquery()
    )
    oldest_first = (d.c.next_attempt_at, d.c.id)
    by_endpoint = (
        select(
            d.c.id,
            d.c.account_id,
            d.c.next_attempt_at,
            (
                func.row_number().over(partition_by=d.c.endpoint_id, order_by=oldest_first)
                + func.coalesce(live.c.n, 0)
            ).label("endpoint_rank"),
        )
        .select_from(
            d.join(e, e.c.id == d.c.endpoint_id).outerjoin(
                live, live.c.endpoint_id == d.c.endpoint_id
            )
        )
        .where(
            d.c.status == PENDING,
            d.c.next_attempt_at <= now,
            _free(conn),
            e.c.disabled_at.is_(None),
        )
        .subquery()
    )
    within_endpoint = by_endpoint.c.endpoint_rank <= per_endpoint
    by_account = (
        select(
            by_endpoint.c.id,
            by_endpoint.c.next_attempt_at,
            by_endpoint.c.account_id,
            func.row_number()
            .over(
                partition_by=by_endpoint.c.account_id,
                order_by=(by_endpoint.c.next_attempt_at, by_endpoint.c.id),
            )
            .label("account_rank"),
        )
        .where(within_endpoint)
        .subquery()
    )
    left = {account: per_account - count for account, count in (held or {}).items()}
    allowance: Any = (
        case(left, value=by_account.c.account_id, else_=per_account)
        if left
        else literal(per_account)
    )
    query = (
        select(by_account.c.id)
        .where(by_account.c.account_rank <= allowance)
        .order_by(by_account.c.account_rank, by_account.c.next_attempt_at, by_account.c.id)
        .limit(limit)
    )
    return list(conn.execute(query).scalars())


def seconds_to_next_due(conn: Connection) -> float | None:
    """Seconds until the earliest pending delivery that is not yet due will be (those due now
    and not taken wait for a send to end: their endpoint's, their account's, or a free slot);
    None when there is none."""
    query = select(clock.seconds_until(conn, func.min(webhook_deliveries.c.next_attempt_at))).where(
        webhook_deliveries.c.status == PENDING,
        webhook_deliveries.c.next_attempt_at > clock.now(conn),
    )
    value = conn.execute(query).scalar_one_or_none()
    return None if value is None else float(value)


def lease(conn: Connection, delivery_id: str, owner: str, lease_seconds: float) -> bool:
    """Take a due delivery for one send by ``owner``, for ``lease_seconds``; False if another
    sender holds it (a lease that has not yet passed) or it is no longer pending."""
    result = conn.execute(
        update(webhook_deliveries)
        .where(
            webhook_deliveries.c.id == delivery_id,
            webhook_deliveries.c.status == PENDING,
            _free(conn),
        )
        .values(lease_until=clock.now(conn, lease_seconds), lease_owner=owner)
    )
    return result.rowcount == 1


def release(conn: Connection, owner: str) -> None:
    """Free the leases ``owner`` holds (a sender stopping: what it was sending is sent again
    soon, by whichever sender takes it, instead of when the leases pass)."""
    conn.execute(
        update(webhook_deliveries)
        .where(webhook_deliveries.c.lease_owner == owner)
        .values(lease_until=None, lease_owner=None)
    )


def record_attempt(
    conn: Connection,
    delivery_id: str,
    owner: str,
    attempt: dict[str, Any],
    outcome: dict[str, Any],
) -> bool:
    """Log one attempt, and move its delivery on (delivered, failed or pending again) if
    ``owner`` still holds it: not when it was canceled, or when the lease passed and another
    sender took it (that sender records its own attempt). False when it was not moved."""
    conn.execute(insert(webhook_attempts).values(delivery_id=delivery_id, **attempt))
    result = conn.execute(
        update(webhook_deliveries)
        .where(
            webhook_deliveries.c.id == delivery_id,
            webhook_deliveries.c.status == PENDING,
            webhook_deliveries.c.lease_owner == owner,
        )
        .values(
            attempts=webhook_deliveries.c.attempts + 1,
            lease_until=None,
            lease_owner=None,
            **outcome,
        )
    )
    return result.rowcount == 1


def resend(conn: Connection, delivery_id: str) -> None:
    conn.execute(
        update(webhook_deliveries)
        .where(webhook_deliveries.c.id == delivery_id)
        .values(status=PENDING, next_attempt_at=clock.now(conn))
    )


def _free(conn: Connection) -> Any:
    """No sender holds the delivery: no lease, or one that has passed."""
    return or_(
        webhook_deliveries.c.lease_until.is_(None),
        webhook_deliveries.c.lease_until < clock.now(conn),
    )


def to_send(conn: Connection, delivery_id: str) -> Row | None:  # type: ignore[type-arg]
    """A delivery with its endpoint's URL and secret."""
    query = (
        select(
            webhook_deliveries.c.id,
            webhook_deliveries.c.account_id,
            webhook_deliveries.c.event,
            webhook_deliveries.c.body,
            webhook_deliveries.c.attempts,
            webhook_deliveries.c.created_at,
            webhook_endpoints.c.url,
            webhook_endpoints.c.secret,
        )
        .join(webhook_endpoints, webhook_endpoints.c.id == webhook_deliveries.c.endpoint_id)
        .where(webhook_deliveries.c.id == delivery_id)
    )
    return conn.execute(query).first()
