"""What a caller can see before spending: models with tiers, resolutions, sizes and prices.

``GET /v1/models`` answers in OpenAI's list format (``{"object": "list", "data": [...]}``): the
catalog models and the OpenAI names that map onto them (``alias_for``), each with darkroom's
pricing fields. With an API key it lists only what the key's tier may use; ``GET /v1/catalog``
shows everything, with tiers and style tools.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from darkroom.api.deps import OptionalPrincipalDep, ServicesDep
from darkroom.api.document import answers
from darkroom.core.catalog_view import model_entries, usable_models
from darkroom.core.errors import NotFound

router = APIRouter(tags=["Catalog"])


@router.get("/v1/models", responses=answers(401))
async def list_models(services: ServicesDep, who: OptionalPrincipalDep) -> dict[str, Any]:
    catalog = services.catalog
    return {
        "object": "list",
        "data": usable_models(catalog, who.tier if who else None),
        "default_model": catalog.default_model,
        "openai_default_model": catalog.openai.default_model,
    }


@router.get("/v1/models/{model_id}", responses=answers(401, 404))
async def get_model(
    model_id: str, services: ServicesDep, who: OptionalPrincipalDep
) -> dict[str, Any]:
    for entry in usable_models(services.catalog, who.tier if who else None):
        if entry["id"] == model_id:
            return entry
    raise NotFound(f"The model {model_id!r} does not exist or this key may not use it")


@router.get("/v1/catalog", responses=answers(401))
async def full_catalog(services: ServicesDep, who: OptionalPrincipalDep) -> dict[str, Any]:
    catalog = services.catalog
    return {
        "default_model": catalog.default_model,
        "default_edit_model": catalog.default_edit_model,
        "model_aliases": catalog.model_aliases,
        "models": model_entries(catalog, who.tier if who else None),
        "tiers": {name: {"resolutions": list(t.resolutions)} for name, t in catalog.tiers.items()},
        "resolutions": catalog.resolutions,
        "aspect_ratios": list(catalog.sizes),
        "tools": {
            name: {"template": t.template, "palette": list(t.palette)}
            for name, t in catalog.tools.items()
        },
        "your_tier": who.tier if who else None,
    }
