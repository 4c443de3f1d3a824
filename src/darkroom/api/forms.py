"""Strict request fields: integers as JSON Schema has them (:data:`JsonInt`), and form
fields (``multipart/form-data``) read as strictly as JSON: a form sends every value as
text, so the text must spell the field's type exactly. An integer field takes ``"2"``, not
``"2.0"``, ``"true"`` or ``" 2"``; a boolean takes ``"true"`` or ``"false"``; text stays text.

An empty optional field is absent: the ``openai`` package sends ``None`` as an empty string.
Whatever does not spell its type is handed on unchanged, so that the strict model refuses it
with a message naming the field.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator

_INTEGER = re.compile(r"-?[0-9]+")
_BOOLEANS = {"true": True, "false": False}


def _types(schema: dict[str, Any]) -> set[str]:
    """The JSON types a property allows (``int | None`` is ``{"integer", "null"}``)."""
    if "type" in schema:
        return {schema["type"]}
    return {kind for option in schema.get("anyOf", ()) for kind in _types(option)}


@cache
def _kinds(model: type[BaseModel]) -> tuple[dict[str, set[str]], frozenset[str]]:
    """Each field's JSON types, and the required fields."""
    schema = model.model_json_schema()
    kinds = {name: _types(prop) for name, prop in schema["properties"].items()}
    return kinds, frozenset(schema.get("required", ()))


def typed_fields(model: type[BaseModel], fields: dict[str, str]) -> dict[str, Any]:
    """``fields`` with each value that spells its field's type converted to it."""
    properties, required = _kinds(model)
    typed: dict[str, Any] = {}
    for name, text in fields.items():
        if text == "" and name not in required:
            continue
        kinds = properties.get(name, set())
        if "integer" in kinds and _INTEGER.fullmatch(text):
            typed[name] = int(text)
        elif "boolean" in kinds and text in _BOOLEANS:
            typed[name] = _BOOLEANS[text]
        else:
            typed[name] = text
    return typed


def _integral(value: Any) -> Any:
    """A JSON number with no fraction (``2.0``, ``1e3``) is an integer, as JSON Schema says;
    anything else goes to the strict check unchanged (``true``, ``"2"`` and ``2.5`` are refused)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An integer field of a strict body: an integral JSON number, and nothing else.
JsonInt = Annotated[int, BeforeValidator(_integral)]
