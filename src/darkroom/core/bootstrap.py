"""The local development account that ``darkroom serve`` creates on an empty database."""

from __future__ import annotations

from pathlib import Path

from darkroom.core import accounts
from darkroom.core.catalog import Catalog
from darkroom.storage.permissions import write_new
from darkroom.store import accounts as sql
from darkroom.store.database import Database

DEV_ACCOUNT_NAME = "local-dev"
DEV_TIER = "business"


def ensure_dev_account(
    db: Database, catalog: Catalog, key_file: Path, credits_amount: int
) -> str | None:
    """On an empty database, create the development account and keep its key in ``key_file``
    (readable by the owner only). Returns the development key when one is on file."""
    with db.read() as conn:
        empty = sql.count_accounts(conn) == 0
    if empty:
        tier = DEV_TIER if DEV_TIER in catalog.tiers else list(catalog.tiers)[-1]
        _, key = accounts.create_account(
            db,
            name=DEV_ACCOUNT_NAME,
            tier=tier,
            credits_amount=credits_amount,
            known_tiers=list(catalog.tiers),
        )
        key_file.unlink(missing_ok=True)
        write_new(key_file, f"{key.key}\n".encode())
        return key.key
    if key_file.exists():
        return key_file.read_text().strip() or None
    return None
