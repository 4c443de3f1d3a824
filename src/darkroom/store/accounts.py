"""SQL for accounts and API keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Row, bindparam, func, insert, select, update

from darkroom.store.tables import accounts, api_keys

_ACTIVE_KEY = (
    select(api_keys.c.id, api_keys.c.key_hash, api_keys.c.account_id, accounts.c.tier)
    .join(accounts, accounts.c.id == api_keys.c.account_id)
    .where(api_keys.c.key_hash == bindparam("key_hash"), api_keys.c.revoked_at.is_(None))
)


def insert_account(
    conn: Connection, *, id: str, name: str, email: str | None, tier: str, now: datetime
) -> None:
    conn.execute(
        insert(accounts).values(id=id, name=name, email=email, tier=tier, balance=0, created_at=now)
    )


def get_account(conn: Connection, account_id: str) -> Row | None:  # type: ignore[type-arg]
    return conn.execute(select(accounts).where(accounts.c.id == account_id)).first()


def count_accounts(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(accounts)).scalar_one())


def list_accounts(conn: Connection) -> list[Row]:  # type: ignore[type-arg]
    return list(conn.execute(select(accounts).order_by(accounts.c.created_at)))


def set_tier(conn: Connection, account_id: str, tier: str) -> bool:
    result = conn.execute(update(accounts).where(accounts.c.id == account_id).values(tier=tier))
    return result.rowcount == 1


def insert_key(
    conn: Connection, *, id: str, account_id: str, prefix: str, key_hash: str, now: datetime
) -> None:
    conn.execute(
        insert(api_keys).values(
            id=id, account_id=account_id, prefix=prefix, key_hash=key_hash, created_at=now
        )
    )


def find_active_key(conn: Connection, key_hash: str) -> Row | None:  # type: ignore[type-arg]
    """The key with this hash joined with its account's tier, unless revoked."""
    return conn.execute(_ACTIVE_KEY, {"key_hash": key_hash}).first()


def list_keys(conn: Connection, account_id: str) -> list[Row]:  # type: ignore[type-arg]
    query = select(api_keys).where(api_keys.c.account_id == account_id)
    return list(conn.execute(query.order_by(api_keys.c.created_at)))


def revoke_key(conn: Connection, key_id: str, now: datetime) -> bool:
    result = conn.execute(
        update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return result.rowcount == 1
