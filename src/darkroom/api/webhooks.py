"""darkroom's webhook endpoints API (``/v1/webhooks``): register a URL for an account's project
events, list, get, disable, enable and delete endpoints, send one a test event, and inspect and
re-send deliveries. See core/webhooks.py."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, WithJsonSchema

from darkroom.api.deps import PrincipalDep, ServicesDep, body_schema, json_body
from darkroom.api.document import answers
from darkroom.core.project_view import iso
from darkroom.core.webhooks import EVENT_NAMES, Delivery

router = APIRouter(tags=["Webhooks"])


def endpoint_view(row: Any) -> dict[str, Any]:
    """An endpoint as the API lists it (never with its secret)."""
    return {
        "id": row.id,
        "url": row.url,
        "events": json.loads(row.events),
        "status": "enabled" if row.disabled_at is None else "disabled",
        "created_at": iso(row.created_at),
        "disabled_at": iso(row.disabled_at),
    }


def delivery_view(delivery: Delivery) -> dict[str, Any]:
    row = delivery.row
    return {
        "id": row.id,
        "event": row.event,
        "project_id": row.project_id,
        "status": row.status,
        "attempts": row.attempts,
        "last_status_code": row.last_status_code,
        "last_error": row.last_error,
        "created_at": iso(row.created_at),
        "next_attempt_at": iso(row.next_attempt_at) if row.status == "pending" else None,
        "delivered_at": iso(row.delivered_at),
        "history": [
            {
                "at": iso(a.attempted_at),
                "status_code": a.status_code,
                "error": a.error,
                "duration_ms": a.duration_ms,
            }
            for a in delivery.attempts
        ],
    }


class CreateWebhookBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    url: str = Field(
        max_length=4096,
        description="Where to POST events (http or https); its host must resolve to an "
        "address the server may reach.",
        json_schema_extra={"pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"},
    )
    events: (
        list[Annotated[str, WithJsonSchema({"type": "string", "enum": list(EVENT_NAMES)})]] | None
    ) = Field(
        default=None,
        max_length=len(EVENT_NAMES),
        json_schema_extra={"minItems": 1},  # core.webhooks refuses an empty list
        description=f"Events to receive, of {', '.join(EVENT_NAMES)}; all when absent.",
    )


@router.post(
    "/v1/webhooks",
    status_code=201,
    openapi_extra=body_schema(CreateWebhookBody),
    responses=answers(401),
)
async def create_webhook(
    request: Request, who: PrincipalDep, services: ServicesDep
) -> JSONResponse:
    """Register an endpoint. The answer carries its signing ``secret``, shown this once."""
    body = await json_body(request, CreateWebhookBody)
    created = await services.webhooks.create(who.account_id, body.url, body.events)
    return JSONResponse({**endpoint_view(created), "secret": created.secret}, status_code=201)


@router.get("/v1/webhooks", responses=answers(401))
def list_webhooks(who: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return {"data": [endpoint_view(row) for row in services.webhooks.endpoints(who.account_id)]}


class UpdateWebhookBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    disabled: StrictBool = Field(
        description="true: send the endpoint nothing (new events are not kept for it; pending "
        "deliveries wait); false: enable it again (what waited goes out)."
    )


@router.get("/v1/webhooks/{webhook_id}", responses=answers(401, 404))
def get_webhook(webhook_id: str, who: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return endpoint_view(services.webhooks.get(who.account_id, webhook_id))


@router.patch(
    "/v1/webhooks/{webhook_id}",
    openapi_extra=body_schema(UpdateWebhookBody),
    responses=answers(401, 404),
)
async def update_webhook(
    webhook_id: str, request: Request, who: PrincipalDep, services: ServicesDep
) -> dict[str, Any]:
    """Disable an endpoint (``{"disabled": true}``) or enable it again (``false``)."""
    body = await json_body(request, UpdateWebhookBody)
    row = await run_in_threadpool(
        services.webhooks.set_disabled, who.account_id, webhook_id, body.disabled
    )
    return endpoint_view(row)


@router.post(
    "/v1/webhooks/{webhook_id}/test",
    responses={
        202: {"description": "Queued; not yet attempted within `wait` seconds."},
        **answers(401, 404),
        409: {"description": "The endpoint is disabled."},
    },
)
async def test_webhook(
    webhook_id: str,
    who: PrincipalDep,
    services: ServicesDep,
    wait: Annotated[float, Query(ge=0, le=30)] = 10,
) -> JSONResponse:
    """Send the endpoint a signed ``webhook.test`` event (``payload``: ``webhook_id``, ``url``,
    ``created_at``), whatever events it subscribed to, and wait up to ``wait`` seconds for the
    first attempt. 200 with the delivery once attempted (``status`` ``delivered``, or
    ``pending`` with ``last_error`` and a retry scheduled), 202 if not attempted yet."""
    delivery = await services.webhooks.send_test(who.account_id, webhook_id, wait)
    return JSONResponse(delivery_view(delivery), status_code=200 if delivery.row.attempts else 202)


@router.delete("/v1/webhooks/{webhook_id}", status_code=204, responses=answers(401, 404))
def delete_webhook(webhook_id: str, who: PrincipalDep, services: ServicesDep) -> Response:
    services.webhooks.delete(who.account_id, webhook_id)
    return Response(status_code=204)


@router.get("/v1/webhooks/{webhook_id}/deliveries", responses=answers(401, 404))
def list_deliveries(
    webhook_id: str,
    who: PrincipalDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    status: Annotated[Literal["pending", "delivered", "failed", "canceled"] | None, Query()] = None,
) -> dict[str, Any]:
    """The endpoint's deliveries, newest first, each with its attempts (``history``)."""
    found = services.webhooks.deliveries(who.account_id, webhook_id, limit=limit, status=status)
    return {"data": [delivery_view(delivery) for delivery in found]}


@router.post(
    "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/resend",
    status_code=202,
    responses=answers(401, 404),
)
def resend_delivery(
    webhook_id: str, delivery_id: str, who: PrincipalDep, services: ServicesDep
) -> JSONResponse:
    """Send a delivery again now, with the same ``webhook-id`` and body."""
    delivery = services.webhooks.resend(who.account_id, webhook_id, delivery_id)
    return JSONResponse(delivery_view(delivery), status_code=202)
