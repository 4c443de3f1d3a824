"""SQL for balances and the append-only credits ledger.

Grants and refunds go through :func:`credit`, one UPDATE. Charges read the balances they need
with :func:`balances_for_update` inside a write transaction (which holds the write lock on
SQLite and row locks elsewhere), so no concurrent writer can move them before
:func:`set_balances` writes the results; the schema's ``balance >= 0`` check is the last line of
defence.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, insert, select, update

from darkroom.store.tables import accounts, ledger

_CREDIT = (
    update(accounts)
    .where(accounts.c.id == bindparam("account_id"))
    .values(balance=accounts.c.balance + bindparam("amount"))
    .returning(accounts.c.balance)
)
_SET_BALANCE = (
    update(accounts)
    .where(accounts.c.id == bindparam("account_id"))
    .values(balance=bindparam("new_balance"))
)
_BALANCE = select(accounts.c.balance).where(accounts.c.id == bindparam("account_id"))
_INSERT = insert(ledger)


def credit(conn: Connection, account_id: str, amount: int) -> int:
    result = conn.execute(_CREDIT, {"account_id": account_id, "amount": amount}).one()
    return int(result[0])


def balance(conn: Connection, account_id: str) -> int | None:
    value = conn.execute(_BALANCE, {"account_id": account_id}).scalar_one_or_none()
    return None if value is None else int(value)


def balances_for_update(conn: Connection, account_ids: Iterable[str]) -> dict[str, int]:
    query = (
        select(accounts.c.id, accounts.c.balance)
        .where(accounts.c.id.in_(list(account_ids)))
        .with_for_update()
    )
    return {row.id: int(row.balance) for row in conn.execute(query)}


def set_balances(conn: Connection, balances: dict[str, int]) -> None:
    if balances:
        conn.execute(
            _SET_BALANCE,
            [{"account_id": key, "new_balance": value} for key, value in balances.items()],
        )


def entry(
    *,
    account_id: str,
    kind: str,
    amount: int,
    balance_after: int,
    project_id: str | None,
    note: str | None,
    now: datetime,
) -> dict[str, Any]:
    """One ledger row, for :func:`append_many`."""
    return {
        "account_id": account_id,
        "kind": kind,
        "amount": amount,
        "balance_after": balance_after,
        "project_id": project_id,
        "note": note,
        "created_at": now,
    }


def append_many(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(_INSERT, rows)


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
