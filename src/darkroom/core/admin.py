"""The operator's actions: accounts, tiers, credits, keys, any project, usage. One implementation
behind the ``darkroom`` operator commands and the admin HTTP API (``/admin/v1``); each action
answers a plain JSON-able dict, the same for both.

The admin API is guarded by an operator token, separate from account keys: the configured one
(``DARKROOM_ADMIN_TOKEN``), else one generated once and kept, readable by the owner only, in the
data directory (``admin-token``).
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

from darkroom.core import accounts, usage
from darkroom.core.accounts import KEY_PREFIX, Authenticator
from darkroom.core.catalog import Catalog
from darkroom.core.credits import grant as grant_credits
from darkroom.core.errors import InvalidRequest, NotFound, Unauthorized
from darkroom.core.projects import Project
from darkroom.storage.signing import load_or_create_secret
from darkroom.store import accounts as account_sql
from darkroom.store import ledger as ledger_sql
from darkroom.store import projects as project_sql
from darkroom.store.database import Database, as_utc

# Column sizes (store/tables.py) and a ceiling on any amount of credits moved at once.
MAX_NAME = 200
MAX_EMAIL = 320
MAX_NOTE = 500
MAX_CREDITS = 10**12
MAX_ENTRIES = 1000


def load_admin_token(configured: str, token_file: Path) -> str:
    """The operator token: ``configured``, else the one kept in ``token_file`` (created once,
    owner-only)."""
    token = load_or_create_secret(configured, token_file).decode().strip()
    if not token:
        raise ValueError(f"the operator token file {token_file} is empty")
    if token.startswith(KEY_PREFIX):
        raise ValueError(f"the operator token must not look like an API key ({KEY_PREFIX}...)")
    return token


def _text(value: str | None, field: str, limit: int, *, required: bool = False) -> str | None:
    value = value.strip() if value is not None else None
    if required and not value:
        raise InvalidRequest(f"{field} must not be empty", field=field)
    if value is not None and len(value) > limit:
        raise InvalidRequest(f"{field} must be at most {limit} characters", field=field)
    return value or None


def _credits(amount: int, field: str) -> int:
    if amount > MAX_CREDITS:
        raise InvalidRequest(f"{field} must be at most {MAX_CREDITS}", field=field)
    return amount


class Admin:
    """The operator's actions on ``db``. ``auth`` is the running server's authenticator (so that
    a revoked key or a new tier takes effect at once there); ``token`` the operator token that
    :meth:`authorize` accepts (none: it accepts nothing)."""

    def __init__(
        self,
        db: Database,
        catalog: Catalog,
        auth: Authenticator | None = None,
        token: str | None = None,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.auth = auth
        self._token = token

    def authorize(self, presented: str | None) -> None:
        """Accept the operator token, in constant time; refuse anything else with a reason."""
        if not presented:
            raise Unauthorized("The admin API needs the operator token: Authorization: Bearer ...")
        if presented.startswith(KEY_PREFIX):
            raise Unauthorized(
                "This is an account API key; the admin API takes the operator token "
                "(DARKROOM_ADMIN_TOKEN, or the admin-token file in the data directory)"
            )
        good = self._token is not None and hmac.compare_digest(
            presented.encode(), self._token.encode()
        )
        if not good:
            raise Unauthorized("Invalid operator token")

    # -- accounts ------------------------------------------------------------------------------

    def create_account(
        self, *, name: str, tier: str = "free", credits: int = 0, email: str | None = None
    ) -> dict[str, Any]:
        """A new account with one API key (shown only in this answer) and an opening balance."""
        name = _text(name, "name", MAX_NAME, required=True) or ""
        email = _text(email, "email", MAX_EMAIL)
        account_id, key = accounts.create_account(
            self.db,
            name=name,
            tier=tier,
            credits_amount=_credits(credits, "credits"),
            known_tiers=list(self.catalog.tiers),
            email=email,
        )
        return {
            "account_id": account_id,
            "name": name,
            "email": email,
            "tier": tier,
            "credits": credits,
            "key_id": key.id,
            "api_key": key.key,
        }

    def list_accounts(self) -> dict[str, Any]:
        with self.db.read() as conn:
            rows = account_sql.list_accounts(conn)
        return {
            "accounts": [
                {"id": r.id, "name": r.name, "tier": r.tier, "balance": r.balance} for r in rows
            ]
        }

    def show_account(self, account_id: str, entries: int = 10) -> dict[str, Any]:
        """Tier, balance, keys (never the keys themselves) and the newest ledger entries."""
        if not 0 <= entries <= MAX_ENTRIES:
            raise InvalidRequest(f"entries must be between 0 and {MAX_ENTRIES}", field="entries")
        with self.db.read() as conn:
            account = account_sql.get_account(conn, account_id)
            if account is None:
                raise NotFound(f"account {account_id!r} not found")
            keys = account_sql.list_keys(conn, account_id)
            recent = ledger_sql.recent(conn, account_id, entries)
        return {
            "id": account.id,
            "name": account.name,
            "email": account.email,
            "tier": account.tier,
            "balance": account.balance,
            "created_at": as_utc(account.created_at).isoformat(),
            "keys": [
                {
                    "id": k.id,
                    "prefix": k.prefix,
                    "created_at": as_utc(k.created_at).isoformat(),
                    "revoked_at": k.revoked_at and as_utc(k.revoked_at).isoformat(),
                }
                for k in keys
            ],
            "ledger": [usage.entry_body(e) for e in recent],
        }

    def set_tier(self, account_id: str, tier: str) -> dict[str, Any]:
        """Move the account to ``tier``; the account as :meth:`show_account` shows it."""
        accounts.set_tier(self.db, account_id, tier, list(self.catalog.tiers))
        if self.auth is not None:
            self.auth.forget()  # the remembered keys carry the old tier
        return self.show_account(account_id)

    def grant(self, account_id: str, amount: int, note: str | None = None) -> dict[str, Any]:
        note = _text(note, "note", MAX_NOTE)
        balance = grant_credits(self.db, account_id, _credits(amount, "amount"), note)
        return {"account_id": account_id, "granted": amount, "note": note, "balance": balance}

    def usage(
        self,
        account_id: str,
        *,
        start: str | None = None,
        end: str | None = None,
        limit: int | None = None,
        before: int | None = None,
    ) -> dict[str, Any]:
        """Ledger entries and totals of any account over ``[start, end)``
        (see :mod:`darkroom.core.usage`)."""
        with self.db.read() as conn:
            if account_sql.get_account(conn, account_id) is None:
                raise NotFound(f"account {account_id!r} not found")
        return usage.report(
            self.db, account_id, start=start, end=end, limit=limit, before=before, operator=True
        )

    # -- keys ----------------------------------------------------------------------------------

    def create_key(self, account_id: str) -> dict[str, Any]:
        """Another API key for the account, shown only in this answer."""
        key = accounts.create_key(self.db, account_id)
        return {"account_id": key.account_id, "key_id": key.id, "api_key": key.key}

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        accounts.revoke_key(self.db, key_id)
        if self.auth is not None:
            self.auth.forget(key_id)
        return {"key_id": key_id, "revoked": True}

    # -- projects ------------------------------------------------------------------------------

    def project(self, project_id: str) -> Project:
        """Any account's project, deleted ones included (``enabled`` false)."""
        with self.db.read() as conn:
            row = project_sql.get_project(conn, project_id)
        if row is None:
            raise NotFound(f"project {project_id!r} not found")
        return Project.from_row(row)
