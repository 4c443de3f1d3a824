"""What ``/openapi.json`` says beyond what FastAPI derives from the routes: every status each
route answers, with the real error body of its dialect, and the catalog's values.

A route declares its own domain answers with :func:`answers` (``responses=answers(401, 404)``);
:func:`install` adds what every route shares when the document is built: 400 where a parameter
or a body can be malformed, 408 and 413 where there is a body (it is refused while being read), 503
with ``Retry-After`` everywhere (a database unreachable, the connection cap reached), and the
error schema of the dialect that the path speaks. FastAPI's 422 ``HTTPValidationError`` goes:
malformed input is a 400 here, and 422 means only an ``Idempotency-Key`` reused for another
request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import Field

from darkroom.core.catalog import MAX_PROMPT_CHARS, Catalog

WHY: dict[int, str] = {
    400: "A parameter or a field is malformed or refused; the message names it.",
    401: "No API key, an unknown key or a revoked key (the operator token on /admin).",
    402: "The balance cannot pay for the request; nothing was charged.",
    403: "Not available on the account's tier, or a download link that does not verify.",
    404: "No such resource for this account.",
    409: "The project already ended (cancel), or the job was canceled while the request waited.",
    408: "The request body stalled (no byte of it for the server's body timeout); refused.",
    410: "The images were deleted by the retention policy.",
    413: "The request body is larger than the server accepts; refused while being read.",
    422: "The Idempotency-Key was used before for a different request.",
    429: "Too many requests, or too many projects waiting: retry after Retry-After seconds.",
    500: "The job ended in error (the credits were refunded).",
    503: "The database or the storage is unreachable, or the server is at its connection cap: "
    "retry after Retry-After seconds.",
    504: "The images were not ready in time; the job was canceled and refunded.",
}

MAGIC_HOUR_ERROR = {
    "type": "object",
    "required": ["message"],
    "properties": {"message": {"type": "string"}},
}
OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "code": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
        }
    },
}
ERROR_SCHEMAS = {"magichour": "MagicHourError", "openai": "OpenAIError"}
RETRY_AFTER = {
    "description": "Seconds to wait before retrying.",
    "schema": {"type": "integer", "minimum": 1},
}


# A prompt is refused when it is empty or only whitespace (the core strips it): the pattern
# asks for one character that is not whitespace (\x1c-\x1f count as whitespace in Python).
PROMPT_PATTERN = r"[^\s\x1c-\x1f]"


def prompt_field(description: str) -> Any:
    """A prompt field as the server takes it: 1 to MAX_PROMPT_CHARS characters, not blank."""
    return Field(
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        description=description,
        json_schema_extra={"pattern": PROMPT_PATTERN},
    )


def form_fields(schema: dict[str, Any]) -> dict[str, Any]:
    """The properties of a JSON body schema as form fields: a form field is never null (it is
    absent, or empty), so the null alternatives go."""
    fields = {}
    for name, prop in schema["properties"].items():
        options = [o for o in prop.get("anyOf", ()) if o != {"type": "null"}]
        if len(options) == 1:
            prop = {
                **{k: v for k, v in prop.items() if k not in ("anyOf", "default")},
                **options[0],
            }
        fields[name] = prop
    return fields


def answers(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route's domain errors (their bodies are filled in by
    :func:`install`)."""
    return {code: {"description": WHY[code]} for code in codes}


# A hook that adds the catalog's values (enums, ranges) to the document: see catalog_values.
Refine = Callable[[dict[str, Any], Catalog], None]


def install(
    app: FastAPI, catalog: Catalog, openai_prefixes: Iterable[str], refine: Iterable[Refine] = ()
) -> None:
    """Build the document once, on first request, completed as the module docstring says."""
    prefixes = tuple(openai_prefixes)
    hooks = tuple(refine)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            complete(document, prefixes)
            for hook in hooks:
                hook(document, catalog)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(document: dict[str, Any], openai_prefixes: tuple[str, ...]) -> None:
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components["MagicHourError"] = MAGIC_HOUR_ERROR
    components["OpenAIError"] = OPENAI_ERROR
    for path, operations in document["paths"].items():
        dialect = "openai" if path.startswith(openai_prefixes) else "magichour"
        for operation in operations.values():
            _complete_operation(operation, ERROR_SCHEMAS[dialect])
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)


def _complete_operation(operation: dict[str, Any], error_schema: str) -> None:
    responses: dict[str, Any] = operation["responses"]
    validation = responses.get("422", {})
    if "HTTPValidationError" in str(validation.get("content", "")):
        del responses["422"]
    parameters = [p for p in operation.get("parameters", ()) if p.get("in") != "path"]
    has_body = "requestBody" in operation
    shared = [503]
    if parameters or has_body:
        shared.append(400)
    if has_body:
        shared += [408, 413]
    for number in shared:
        responses.setdefault(str(number), {"description": WHY[number]})
    for code, response in responses.items():
        if not code.isdigit() or int(code) < 400:
            continue
        content = response.setdefault("content", {})
        if not content.get("application/json", {}).get("schema"):
            content["application/json"] = {
                "schema": {"$ref": f"#/components/schemas/{error_schema}"}
            }
        if code in ("429", "503"):
            response.setdefault("headers", {})["Retry-After"] = RETRY_AFTER
    operation["responses"] = dict(sorted(responses.items()))
