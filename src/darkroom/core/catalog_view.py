"""What a caller sees of the catalog before spending (``/v1/models``, ``/v1/catalog``): each
model with its tiers, resolutions, sizes and prices, whether this server can render it now, and
the OpenAI names that map onto the models."""

from __future__ import annotations

from typing import Any

from darkroom.core.catalog import Catalog
from darkroom.engine.diffusers_backend import weights_status


def model_entries(catalog: Catalog, tier: str | None) -> list[dict[str, Any]]:
    """Every catalog model; with a tier, whether (and at which resolutions) it may use each."""
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
            # Whether this server can render it now (its backend runs and can serve it).
            "served": model.unavailable is None,
            "tiers": list(model.tiers),
            "resolutions": resolutions,
            "image_counts": list(model.image_counts),
            # Whether the image generator serves it, and whether (and with how many input
            # images at most) it edits.
            "generates": model.generates,
            "edits": model.edits,
            "max_input_images": model.max_input_images if model.edits else 0,
            # Credits per image at each resolution (the published "from" price is the first).
            "credits_per_image": {r: catalog.price_per_image(name, r) for r in resolutions},
            "sizes": {
                ratio: {r: list(catalog.sizes[ratio][r]) for r in resolutions}
                for ratio in catalog.sizes
            },
        }
        if model.backend == "diffusers" and model.weights is not None:
            status = weights_status(model.weights)
            # A caller learns whether the model can run, not where its files are.
            entry["weights"] = {
                "source": "local directory" if status["local"] else status["source"],
                "loadable": status["loadable"],
            }
        if model.unavailable is not None:
            entry["unavailable_reason"] = model.unavailable
        if model.upstream is not None:
            entry["upstream"] = {"vendor_model": model.upstream.model}
        if tier is not None:
            entry["available"] = tier in model.tiers
            entry["resolutions_for_tier"] = [
                r for r in resolutions if r in catalog.tiers[tier].resolutions
            ]
        entries.append(entry)
    return entries


def alias_entries(catalog: Catalog, models: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The OpenAI names whose catalog model is among ``models``, described by that model."""
    entries = []
    for name, alias in catalog.openai.aliases.items():
        target = models.get(alias.model)
        if target is None:
            continue
        entry = {**target, "id": name, "alias_for": alias.model, "max_n": alias.max_n}
        if alias.max_images is not None and target["edits"]:
            entry["max_input_images"] = alias.max_images
        entry["title"] = f"{name} (served by {target['title']})"
        if alias.sizes:
            entry["openai_sizes"] = list(alias.sizes)
        if alias.quality:
            entry["quality_models"] = dict(alias.quality)
        entries.append(entry)
    return entries


def usable_models(catalog: Catalog, tier: str | None) -> list[dict[str, Any]]:
    """The models (and OpenAI names) a tier may use; all of them when the tier is unknown."""
    models = {e["id"]: e for e in model_entries(catalog, tier) if e.get("available", True)}
    return [*models.values(), *alias_entries(catalog, models)]
