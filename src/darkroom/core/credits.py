"""Credits: an append-only ledger of grants, charges and refunds.

Each function that takes a ``conn`` runs inside the caller's transaction, so the balance and the
ledger row that explains it commit together or not at all. A project has at most one charge and
one refund (a unique constraint in the schema), which makes a refund exactly-once even if two
parties try to refund the same project.
"""

from __future__ import annotations

from sqlalchemy import Connection

from darkroom.core.errors import InsufficientCredits, InvalidRequest, NotFound
from darkroom.store import ledger
from darkroom.store.database import Database, utcnow


def grant_in(conn: Connection, account_id: str, amount: int, note: str | None = None) -> int:
    new_balance = ledger.credit(conn, account_id, amount)
    ledger.append(
        conn,
        account_id=account_id,
        kind="grant",
        amount=amount,
        balance_after=new_balance,
        project_id=None,
        note=note,
        now=utcnow(),
    )
    return new_balance


def grant(db: Database, account_id: str, amount: int, note: str | None = None) -> int:
    """Add ``amount`` credits; the new balance."""
    if amount <= 0:
        raise InvalidRequest("the amount to grant must be a positive number", field="amount")
    with db.write() as conn:
        if ledger.balance(conn, account_id) is None:
            raise NotFound(f"account {account_id!r} not found")
        return grant_in(conn, account_id, amount, note)


def charge_in(conn: Connection, account_id: str, project_id: str, amount: int) -> int:
    """Take ``amount`` for ``project_id`` or raise :class:`InsufficientCredits` (nothing taken)."""
    new_balance = ledger.debit(conn, account_id, amount)
    if new_balance is None:
        raise InsufficientCredits(required=amount, balance=ledger.balance(conn, account_id) or 0)
    ledger.append(
        conn,
        account_id=account_id,
        kind="charge",
        amount=-amount,
        balance_after=new_balance,
        project_id=project_id,
        note=None,
        now=utcnow(),
    )
    return new_balance


def refund_in(conn: Connection, account_id: str, project_id: str, note: str) -> int:
    """Give back what ``project_id`` was charged (once); the amount refunded."""
    charge = ledger.entry_for(conn, project_id, "charge")
    if charge is None or ledger.entry_for(conn, project_id, "refund") is not None:
        return 0
    amount = -int(charge.amount)
    new_balance = ledger.credit(conn, account_id, amount)
    ledger.append(
        conn,
        account_id=account_id,
        kind="refund",
        amount=amount,
        balance_after=new_balance,
        project_id=project_id,
        note=note,
        now=utcnow(),
    )
    return amount
