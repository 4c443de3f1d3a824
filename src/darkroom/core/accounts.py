"""Accounts and their API keys.

Keys look like ``dk_<43 random characters>``; only their SHA-256 is stored (the key has 256 bits of
entropy, so a slow hash would add nothing), and the lookup compares hashes in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from darkroom.core import credits
from darkroom.core.errors import InvalidRequest, NotFound, Unauthorized
from darkroom.core.ids import new_id
from darkroom.queue.notify import AUTH
from darkroom.store import accounts as sql
from darkroom.store.database import Database, as_utc, utcnow

KEY_PREFIX = "dk_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the account behind a valid API key."""

    key_id: str
    account_id: str
    tier: str


@dataclass(frozen=True)
class NewKey:
    id: str
    account_id: str
    key: str  # shown once, never stored


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _well_formed(key: str | None) -> str:
    """The key, or Unauthorized if it cannot be one of ours (no database needed to tell)."""
    if not key or not key.startswith(KEY_PREFIX) or len(key) > 200:
        raise Unauthorized()
    return key


def authenticate(db: Database, key: str | None) -> Principal:
    digest = hash_key(_well_formed(key))
    row = db.query(lambda conn: sql.find_active_key(conn, digest))
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        raise Unauthorized()
    return Principal(key_id=row.id, account_id=row.account_id, tier=row.tier)


class Authenticator:
    """:func:`authenticate` with a short memory: a key that was valid is trusted again for
    ``ttl`` seconds without a database read. So a key revoked, or a tier changed, by another
    process (the operator CLI) takes effect within ``ttl``; ``forget`` makes it immediate here.
    Unknown keys are never remembered.

    Calling it may read the database (a blocking call: from the event loop, run it on a thread);
    :meth:`cached` never does, so a request whose key is remembered needs no thread at all."""

    def __init__(self, db: Database, ttl: float, max_entries: int = 10_000) -> None:
        self.db = db
        self.ttl = ttl
        self.max_entries = max_entries
        self._known: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()  # called from the event loop and from threads

    def cached(self, key: str | None) -> Principal | None:
        """The principal remembered for ``key``, if it is still trusted, or Unauthorized for
        what cannot be a key; never reads the database (None: ask :meth:`__call__`)."""
        key = _well_formed(key)
        if self.ttl <= 0:
            return None
        hit = self._known.get(hash_key(key))
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        return None

    def __call__(self, key: str | None) -> Principal:
        known = self.cached(key)
        if known is not None:
            return known
        principal = authenticate(self.db, key)
        if self.ttl > 0 and key is not None:
            with self._lock:
                if len(self._known) >= self.max_entries:
                    self._known.clear()
                self._known[hash_key(key)] = (principal, time.monotonic() + self.ttl)
        return principal

    def forget(self, key_id: str | None = None) -> None:
        """Drop one key (by id) or, with no id, everything remembered."""
        with self._lock:
            if key_id is None:
                self._known.clear()
                return
            for digest in [d for d, (p, _) in self._known.items() if p.key_id == key_id]:
                del self._known[digest]


def account_body(db: Database, account_id: str) -> dict[str, Any]:
    """``GET /v1/account``: the account as the published SDK's ``client.v1.account.list()``
    parses it (``id``, ``email``, ``credits``, ``tier``, ``subscription``), with darkroom's
    ``name`` and ``created_at``."""
    account = db.query(lambda conn: sql.get_account(conn, account_id))
    if account is None:  # deleted between the key check and this read
        raise NotFound()
    return {
        "id": account.id,
        "email": account.email,
        "credits": account.balance,
        "tier": account.tier,
        # A self-hosted account has no paid plan: the tier is set by the operator.
        "subscription": None,
        "name": account.name,
        "created_at": as_utc(account.created_at).isoformat(timespec="seconds"),
    }


def create_account(
    db: Database,
    *,
    name: str,
    tier: str,
    credits_amount: int,
    known_tiers: list[str],
    email: str | None = None,
) -> tuple[str, NewKey]:
    """A new account with one API key and an opening grant, in one transaction."""
    if tier not in known_tiers:
        raise InvalidRequest(f"tier must be one of {', '.join(known_tiers)}", field="tier")
    if credits_amount < 0:
        raise InvalidRequest("credits must not be negative", field="credits")
    account_id = new_id("acct")
    with db.write() as conn:
        sql.insert_account(conn, id=account_id, name=name, email=email, tier=tier, now=utcnow())
        key = _insert_key(conn, account_id)
        if credits_amount:
            credits.grant_in(conn, account_id, credits_amount, note="opening balance")
    return account_id, key


def create_key(db: Database, account_id: str) -> NewKey:
    with db.write() as conn:
        if sql.get_account(conn, account_id) is None:
            raise NotFound(f"account {account_id!r} not found")
        return _insert_key(conn, account_id)


def revoke_key(db: Database, key_id: str) -> None:
    """Revoke a key; every node forgets the keys it remembers once this commits (at once on
    PostgreSQL, else within ``auth_cache_seconds``)."""
    with db.write() as conn:
        if not sql.revoke_key(conn, key_id, utcnow()):
            raise NotFound(f"no active key {key_id!r}")
        db.notify_in(conn, AUTH, key_id)


def set_tier(db: Database, account_id: str, tier: str, known_tiers: list[str]) -> None:
    if tier not in known_tiers:
        raise InvalidRequest(f"tier must be one of {', '.join(known_tiers)}", field="tier")
    with db.write() as conn:
        if not sql.set_tier(conn, account_id, tier):
            raise NotFound(f"account {account_id!r} not found")
        db.notify_in(conn, AUTH, account_id)


def _insert_key(conn: Connection, account_id: str) -> NewKey:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    key_id = new_id("key", 8)
    sql.insert_key(
        conn,
        id=key_id,
        account_id=account_id,
        prefix=key[:10],
        key_hash=hash_key(key),
        now=utcnow(),
    )
    return NewKey(id=key_id, account_id=account_id, key=key)
