"""``GET /v1/account``: the calling key's account, shaped as the published SDK's
``client.v1.account.list()`` parses it (``id``, ``email``, ``credits``, ``tier``,
``subscription``), plus darkroom's ``name`` and ``created_at``; and
``GET /v1/account/usage``: its ledger entries and totals over a time range."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from darkroom.api.deps import PrincipalDep, ServicesDep
from darkroom.api.document import answers
from darkroom.core import accounts, usage

router = APIRouter(tags=["Account"])


@router.get("/v1/account", responses=answers(401, 404))
def get_account(who: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return accounts.account_body(services.db, who.account_id)


def usage_query(
    start: Annotated[
        str | None,
        Query(
            alias="from",
            description="Start of the range (inclusive): an ISO 8601 date or datetime, UTC "
            "unless it has a zone. Default: 30 days before `to`.",
        ),
    ] = None,
    end: Annotated[
        str | None,
        Query(alias="to", description="End of the range (exclusive). Default: now."),
    ] = None,
    limit: Annotated[
        int | None,
        Query(
            json_schema_extra={"minimum": 1, "maximum": usage.MAX_LIMIT},
            description=f"Entries per page, 1..{usage.MAX_LIMIT} (default 100).",
        ),
    ] = None,
    before: Annotated[
        int | None,
        Query(
            json_schema_extra={"minimum": 1, "maximum": usage.MAX_ENTRY_ID},
            description="The next page: entries older than this entry id (`next_before`).",
        ),
    ] = None,
) -> dict[str, Any]:
    """The usage query parameters, as :func:`darkroom.core.usage.report` takes them."""
    return {"start": start, "end": end, "limit": limit, "before": before}


UsageQuery = Annotated[dict[str, Any], Depends(usage_query)]


@router.get("/v1/account/usage", responses=answers(401))
def get_usage(who: PrincipalDep, services: ServicesDep, query: UsageQuery) -> dict[str, Any]:
    return usage.report(services.db, who.account_id, **query)
