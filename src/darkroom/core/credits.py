"""Credits: an append-only ledger of grants, charges and refunds.

Each function that takes a ``conn`` runs inside the caller's transaction, so the balance and the
ledger row that explains it commit together or not at all. Charges come in batches (the group
commit of concurrent creates): the balances are read under the write lock, the charges applied
in order, and each one either taken in full or refused. A project has at most one charge and
one refund (a unique constraint in the schema), which makes a refund exactly-once even if two
parties try to refund the same project.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from darkroom.core.errors import InsufficientCredits, InvalidRequest, NotFound
from darkroom.store import ledger
from darkroom.store.database import Database, utcnow


def _add(
    conn: Connection,
    account_id: str,
    kind: str,
    amount: int,
    project_id: str | None,
    note: str | None,
) -> int:
    """Credit ``amount`` and record why, in the caller's transaction; the new balance."""
    new_balance = ledger.credit(conn, account_id, amount)
    ledger.append_many(
        conn,
        [
            ledger.entry(
                account_id=account_id,
                kind=kind,
                amount=amount,
                balance_after=new_balance,
                project_id=project_id,
                note=note,
                now=utcnow(),
            )
        ],
    )
    return new_balance


def grant_in(conn: Connection, account_id: str, amount: int, note: str | None = None) -> int:
    return _add(conn, account_id, "grant", amount, None, note)


def grant(db: Database, account_id: str, amount: int, note: str | None = None) -> int:
    """Add ``amount`` credits; the new balance."""
    if amount <= 0:
        raise InvalidRequest("the amount to grant must be a positive number", field="amount")
    with db.write() as conn:
        if ledger.balance(conn, account_id) is None:
            raise NotFound(f"account {account_id!r} not found")
        return grant_in(conn, account_id, amount, note)


@dataclass(frozen=True)
class Charge:
    account_id: str
    project_id: str
    amount: int


def charge_in(conn: Connection, charges: list[Charge]) -> list[InsufficientCredits | None]:
    """Take each charge in order, in the caller's transaction; for each, None when it was taken
    or the :class:`InsufficientCredits` that refused it (nothing taken for that one)."""
    balances = ledger.balances_for_update(conn, {c.account_id for c in charges})
    start = dict(balances)
    outcomes: list[InsufficientCredits | None] = []
    rows = []
    now = utcnow()
    for charge in charges:
        available = balances.get(charge.account_id, 0)
        if available < charge.amount:
            outcomes.append(InsufficientCredits(required=charge.amount, balance=available))
            continue
        balances[charge.account_id] = available - charge.amount
        rows.append(
            ledger.entry(
                account_id=charge.account_id,
                kind="charge",
                amount=-charge.amount,
                balance_after=available - charge.amount,
                project_id=charge.project_id,
                note=None,
                now=now,
            )
        )
        outcomes.append(None)
    ledger.set_balances(conn, {k: v for k, v in balances.items() if v != start[k]})
    ledger.append_many(conn, rows)
    return outcomes


def refund_in(conn: Connection, account_id: str, project_id: str, note: str) -> int:
    """Give back what ``project_id`` was charged (once); the amount refunded."""
    charge = ledger.entry_for(conn, project_id, "charge")
    if charge is None or ledger.entry_for(conn, project_id, "refund") is not None:
        return 0
    amount = -int(charge.amount)
    _add(conn, account_id, "refund", amount, project_id, note)
    return amount
