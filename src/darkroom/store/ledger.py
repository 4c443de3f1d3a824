"""SQL for balances and the append-only credits ledger.

Balances change only through :func:`debit` and :func:`credit`, each a single conditional UPDATE, so
the database itself guarantees a balance never goes below zero whatever runs concurrently.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Row, insert, select, update

from darkroom.store.tables import accounts, ledger


def debit(conn: Connection, account_id: str, amount: int) -> int | None:
    """Take ``amount`` if the balance covers it; the new balance, or None if it does not."""
    result = conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id, accounts.c.balance >= amount)
        .values(balance=accounts.c.balance - amount)
        .returning(accounts.c.balance)
    ).first()
    return None if result is None else int(result[0])


def credit(conn: Connection, account_id: str, amount: int) -> int:
    result = conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(balance=accounts.c.balance + amount)
        .returning(accounts.c.balance)
    ).one()
    return int(result[0])


def balance(conn: Connection, account_id: str) -> int | None:
    value = conn.execute(
        select(accounts.c.balance).where(accounts.c.id == account_id)
    ).scalar_one_or_none()
    return None if value is None else int(value)


def append(
    conn: Connection,
    *,
    account_id: str,
    kind: str,
    amount: int,
    balance_after: int,
    project_id: str | None,
    note: str | None,
    now: datetime,
) -> None:
    conn.execute(
        insert(ledger).values(
            account_id=account_id,
            kind=kind,
            amount=amount,
            balance_after=balance_after,
            project_id=project_id,
            note=note,
            created_at=now,
        )
    )


def entry_for(conn: Connection, project_id: str, kind: str) -> Row | None:  # type: ignore[type-arg]
    return conn.execute(
        select(ledger).where(ledger.c.project_id == project_id, ledger.c.kind == kind)
    ).first()


def recent(conn: Connection, account_id: str, limit: int) -> list[Row]:  # type: ignore[type-arg]
    query = (
        select(ledger)
        .where(ledger.c.account_id == account_id)
        .order_by(ledger.c.id.desc())
        .limit(limit)
    )
    return list(conn.execute(query))
