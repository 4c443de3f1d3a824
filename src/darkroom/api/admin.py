"""The operator's admin API under ``/admin/v1``, guarded by the operator token (never an account
key). Each route parses, calls :class:`darkroom.core.admin.Admin` (which the operator commands
call too) and answers its dict; errors have the Magic Hour shape (``{"message"}``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from darkroom.api.account import UsageQuery
from darkroom.api.deps import ServicesDep, bearer_token, body_schema, json_body
from darkroom.api.document import PROMPT_PATTERN, answers
from darkroom.api.forms import JsonInt
from darkroom.api.magichour import project_body
from darkroom.core.admin import MAX_CREDITS, MAX_EMAIL, MAX_ENTRIES, MAX_NAME, MAX_NOTE


async def operator_only(request: Request, services: ServicesDep) -> None:
    services.admin.authorize(bearer_token(request))


router = APIRouter(
    prefix="/admin/v1",
    tags=["Admin"],
    dependencies=[Depends(operator_only)],
    responses=answers(401),
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# The limits are checked by core.admin (with its messages); the document states them.
class NewAccount(_Body):
    name: str = Field(
        json_schema_extra={"minLength": 1, "maxLength": MAX_NAME, "pattern": PROMPT_PATTERN}
    )
    tier: str = "free"  # one of the catalog's tiers (catalog_values documents them)
    credits: JsonInt = Field(default=0, json_schema_extra={"minimum": 0, "maximum": MAX_CREDITS})
    email: str | None = Field(default=None, json_schema_extra={"maxLength": MAX_EMAIL})


class AccountChange(_Body):
    tier: str


class Grant(_Body):
    amount: JsonInt = Field(json_schema_extra={"minimum": 1, "maximum": MAX_CREDITS})
    note: str | None = Field(default=None, json_schema_extra={"maxLength": MAX_NOTE})


@router.get("/accounts")
def list_accounts(services: ServicesDep) -> dict[str, Any]:
    return services.admin.list_accounts()


@router.post("/accounts", status_code=201, openapi_extra=body_schema(NewAccount))
async def create_account(request: Request, services: ServicesDep) -> dict[str, Any]:
    body = await json_body(request, NewAccount)
    return await run_in_threadpool(services.admin.create_account, **body.model_dump())


@router.get("/accounts/{account_id}", responses=answers(404))
def show_account(
    account_id: str,
    services: ServicesDep,
    entries: Annotated[
        int,
        Query(
            description="How many recent ledger entries.",
            json_schema_extra={"minimum": 0, "maximum": MAX_ENTRIES},
        ),
    ] = 10,
) -> dict[str, Any]:
    return services.admin.show_account(account_id, entries)


@router.patch(
    "/accounts/{account_id}", openapi_extra=body_schema(AccountChange), responses=answers(404)
)
async def change_account(
    account_id: str, request: Request, services: ServicesDep
) -> dict[str, Any]:
    body = await json_body(request, AccountChange)
    return await run_in_threadpool(services.admin.set_tier, account_id, body.tier)


@router.post(
    "/accounts/{account_id}/credits", openapi_extra=body_schema(Grant), responses=answers(404)
)
async def grant_credits(account_id: str, request: Request, services: ServicesDep) -> dict[str, Any]:
    body = await json_body(request, Grant)
    return await run_in_threadpool(services.admin.grant, account_id, body.amount, body.note)


@router.post("/accounts/{account_id}/keys", status_code=201, responses=answers(404))
def create_key(account_id: str, services: ServicesDep) -> dict[str, Any]:
    return services.admin.create_key(account_id)


@router.delete("/keys/{key_id}", responses=answers(404))
def revoke_key(key_id: str, services: ServicesDep) -> dict[str, Any]:
    return services.admin.revoke_key(key_id)


@router.get("/accounts/{account_id}/usage", responses=answers(404))
def account_usage(account_id: str, services: ServicesDep, query: UsageQuery) -> dict[str, Any]:
    return services.admin.usage(account_id, **query)


@router.get("/projects/{project_id}", responses=answers(404))
def get_project(project_id: str, services: ServicesDep) -> dict[str, Any]:
    """Any account's project, as its owner's GET shows it, with its ``account_id``; a deleted
    one too (``enabled`` false, no downloads: its files are gone)."""
    project = services.admin.project(project_id)
    body = project_body(project, services)
    if not project.enabled:
        body["downloads"] = []
    return {**body, "account_id": project.account_id}
