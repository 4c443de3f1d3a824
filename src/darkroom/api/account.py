"""``GET /v1/account``: the calling key's account, shaped as the published SDK's
``client.v1.account.list()`` parses it (``id``, ``email``, ``credits``, ``tier``,
``subscription``), plus darkroom's ``name`` and ``created_at``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from darkroom.api.deps import PrincipalDep, ServicesDep
from darkroom.core.errors import NotFound
from darkroom.store import accounts as account_sql
from darkroom.store.database import as_utc

router = APIRouter(tags=["Account"])


@router.get("/v1/account")
async def get_account(who: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    with services.db.read() as conn:
        account = account_sql.get_account(conn, who.account_id)
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
