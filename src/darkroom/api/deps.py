"""FastAPI dependencies shared by the routes: the services, the node and the calling account."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ValidationError

from darkroom.api.errors import validation_message
from darkroom.core.accounts import Principal
from darkroom.core.errors import InvalidRequest
from darkroom.core.readiness import RunningNode
from darkroom.services import Core, Services


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_core(request: Request) -> Core:
    """What the process shares (the probes of a worker, which serves no API, have only this)."""
    core: Core = request.app.state.core
    return core


CoreDep = Annotated[Core, Depends(get_core)]


async def get_node(request: Request) -> RunningNode:
    node: RunningNode = request.app.state.node
    return node


NodeDep = Annotated[RunningNode, Depends(get_node)]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def get_principal(request: Request, services: ServicesDep) -> Principal:
    return await authenticate(services, bearer_token(request))


async def get_optional_principal(request: Request, services: ServicesDep) -> Principal | None:
    token = bearer_token(request)
    return None if token is None else await authenticate(services, token)


async def authenticate(services: Services, token: str | None) -> Principal:
    """The key's principal: from memory on the event loop when the key was seen lately (most
    requests: no thread hop), otherwise looked up in the database on a thread."""
    known = services.auth.cached(token)
    if known is not None:
        return known
    return await run_in_threadpool(services.auth, token)


PrincipalDep = Annotated[Principal, Depends(get_principal)]
OptionalPrincipalDep = Annotated[Principal | None, Depends(get_optional_principal)]


Body = TypeVar("Body", bound=BaseModel)


async def json_body(request: Request, model: type[Body]) -> Body:
    """The request body parsed as JSON (whatever the Content-Type says) and validated, or an
    :class:`InvalidRequest` naming the first bad field."""
    raw = await request.body()
    if not raw.strip():
        raise InvalidRequest("Missing request body")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        message, field = validation_message(exc.errors())
        raise InvalidRequest(message, field=field) from None


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting a body that a route parses with :func:`json_body` (nested
    models inlined, since the OpenAPI document has no place for pydantic's ``$defs``)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline(schema)}},
        }
    }


def fingerprint(body: BaseModel) -> str:
    """A digest of a parsed request body: two retries with one Idempotency-Key must match it."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()
