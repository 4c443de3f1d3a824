"""The catalog's values in ``/openapi.json``: the models, aspect ratios, resolutions, tools,
qualities and styles a request may name, as enums of the fields that take them, so that the
document refuses what the server refuses. They come from the running catalog (an operator's
override included), not from the code."""

from __future__ import annotations

from typing import Any

from darkroom.core.catalog import Catalog

MAGIC_HOUR = "/v1/ai-image-generator"
EDITOR = "/v1/ai-image-editor"
OPENAI_JSON = ("/v1/images/generations", "/api/images/generations")
OPENAI_FORM = "/v1/images/edits"


def magic_hour_values(catalog: Catalog) -> dict[str, list[str]]:
    """Each field of the Magic Hour body (``style.x`` for the style's) and what it may be."""
    return {
        "model": ["default", *catalog.generators(), *catalog.model_aliases],
        "aspect_ratio": list(catalog.sizes),
        "orientation": list(catalog.orientations),
        "resolution": ["auto", *catalog.resolutions],
        "style.tool": list(catalog.tools),
        "style.quality_mode": list(catalog.quality_modes),
    }


def editor_values(catalog: Catalog) -> dict[str, list[str]]:
    """Each field of the image editor's body and what it may be."""
    return {
        "model": ["default", *catalog.editors()],
        "aspect_ratio": ["auto", *catalog.sizes],
        "resolution": ["auto", *catalog.resolutions],
        "style.model": ["default", *catalog.edit_style_models],
    }


def openai_values(catalog: Catalog) -> dict[str, list[str]]:
    section = catalog.openai
    return {  # an empty string is the field left out (what a form sends for None)
        "model": ["", *section.aliases, *catalog.models],
        "quality": ["", *section.qualities],
        "style": ["", *section.styles],
        "tool": ["", *catalog.tools],
    }


def _body_schema(document: dict[str, Any], path: str, media: str) -> dict[str, Any] | None:
    operation = document["paths"].get(path, {}).get("post")
    if operation is None:
        return None
    schema: dict[str, Any] = operation["requestBody"]["content"][media]["schema"]
    return schema


def _restrict(schema: dict[str, Any], field: str, values: list[str]) -> None:
    """Make ``field`` (``a.b`` for a nested one) one of ``values`` (or null where it was)."""
    *parents, name = field.split(".")
    node = schema
    for part in parents:
        node = node["properties"][part]
    prop = node["properties"][name]
    nullable = {"type": "null"} in prop.get("anyOf", ())
    described = {key: prop[key] for key in ("description", "title", "default") if key in prop}
    choice = {"type": "string", "enum": values}
    node["properties"][name] = {
        **described,
        **({"anyOf": [choice, {"type": "null"}]} if nullable else choice),
    }


def refine(document: dict[str, Any], catalog: Catalog) -> None:
    for path, method in (
        ("/admin/v1/accounts", "post"),
        ("/admin/v1/accounts/{account_id}", "patch"),
    ):
        operation = document["paths"].get(path, {}).get(method)
        if operation is not None:
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            _restrict(body, "tier", list(catalog.tiers))
    for path, values_of in ((MAGIC_HOUR, magic_hour_values), (EDITOR, editor_values)):
        schema = _body_schema(document, path, "application/json")
        if schema is not None:
            for field, values in values_of(catalog).items():
                _restrict(schema, field, values)
    for path, media in [(p, "application/json") for p in OPENAI_JSON] + [
        (OPENAI_FORM, "multipart/form-data")
    ]:
        schema = _body_schema(document, path, media)
        if schema is not None:
            for field, values in openai_values(catalog).items():
                _restrict(schema, field, values)
