"""What a caller can see before spending: models with tiers, resolutions, sizes and prices.

``GET /v1/models`` answers in OpenAI's list format (``{"object": "list", "data": [...]}``) with
darkroom's pricing fields on each model; ``GET /v1/catalog`` adds tiers and style tools. With an
API key, each model says whether the caller's tier may use it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from darkroom.api.deps import OptionalPrincipalDep, ServicesDep
from darkroom.core.catalog import Catalog

router = APIRouter(tags=["Catalog"])


def model_entries(catalog: Catalog, tier: str | None) -> list[dict[str, Any]]:
    entries = []
    for name, model in catalog.models.items():
        resolutions = catalog.resolution_order(model.resolutions)
        entry: dict[str, Any] = {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "darkroom",
            "title": model.title,
            "backend": model.backend,
            "tiers": list(model.tiers),
            "resolutions": resolutions,
            "image_counts": list(model.image_counts),
            "credits_per_image": {r: catalog.price(name, r, 1) for r in resolutions},
            "sizes": {
                ratio: {r: list(catalog.sizes[ratio][r]) for r in resolutions}
                for ratio in catalog.sizes
            },
        }
        if tier is not None:
            entry["available"] = tier in model.tiers
            entry["resolutions_for_tier"] = [
                r for r in resolutions if r in catalog.tiers[tier].resolutions
            ]
        entries.append(entry)
    return entries


@router.get("/v1/models")
async def list_models(services: ServicesDep, who: OptionalPrincipalDep) -> dict[str, Any]:
    catalog = services.catalog
    return {
        "object": "list",
        "data": model_entries(catalog, who.tier if who else None),
        "default_model": catalog.default_model,
    }


@router.get("/v1/catalog")
async def full_catalog(services: ServicesDep, who: OptionalPrincipalDep) -> dict[str, Any]:
    catalog = services.catalog
    return {
        "default_model": catalog.default_model,
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
