"""The OpenAI-compatible images API: ``POST /v1/images/generations`` (what the ``openai`` package
sends), ``POST /api/images/generations`` (the gateway path of seed 004) and
``POST /v1/images/edits`` (multipart, as ``client.images.edit`` sends it).

A second dialect over the same core: the request becomes an :class:`ImageSpec` that the catalog
plans and prices, the project is charged and queued like any other (and is visible through
``GET /v1/image-projects/{id}``), and the request waits for it: the answer carries the images as
signed URLs or base64. A job that outlives ``sync_timeout_seconds`` is canceled and refunded.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.datastructures import UploadFile

from darkroom.api import openai_results as results
from darkroom.api.deps import PrincipalDep, ServicesDep, body_schema, fingerprint, json_body
from darkroom.api.document import answers, form_fields, prompt_field
from darkroom.api.errors import validation_message
from darkroom.api.forms import JsonInt, typed_fields
from darkroom.core.accounts import Principal
from darkroom.core.creation import MAX_SOURCES, Order
from darkroom.core.errors import InvalidRequest
from darkroom.core.openai_models import OpenAIImages
from darkroom.core.projects import MAX_SEED
from darkroom.core.sources import Source, SourceSet
from darkroom.services import Services

router = APIRouter(tags=["OpenAI images"])

# The routes whose body may carry source images (uploaded, or base64 in JSON): they take the
# larger body limit (Settings.source_body_max_bytes).
SOURCE_PATHS = (
    "/v1/images/generations",
    "/api/images/generations",
    "/v1/images/edits",
    "/api/images/edits",
)


class ImageRequest(BaseModel):
    """The fields that generations and edits share (OpenAI's names, plus darkroom's own)."""

    # Strict: a boolean is not a number, nor a number a string (JSON as sent, form fields as
    # forms.typed_fields reads them).
    model_config = ConfigDict(extra="ignore", strict=True)

    prompt: str = prompt_field("What to draw (or how to change the source image).")
    model: str | None = Field(
        default=None, description="A catalog model, or dall-e-2 (default), dall-e-3, gpt-image-1."
    )
    n: JsonInt | None = Field(default=None, ge=1, le=10, description="How many images (1..10).")
    size: str | None = Field(
        default=None, description="WIDTHxHEIGHT (1024x1024 by default) or auto."
    )
    response_format: Literal["url", "b64_json"] | None = Field(
        default=None, description="url (signed, valid for an hour; default) or b64_json."
    )
    quality: str | None = Field(default=None, description="standard, hd, low, medium, high, auto.")
    style: str | None = Field(default=None, description="vivid or natural: rewrites the prompt.")
    output_format: Literal["png", "jpeg", "webp"] | None = Field(default=None)
    output_compression: JsonInt | None = Field(default=None, ge=0, le=100)
    background: Literal["auto", "opaque", "transparent"] | None = None
    user: str | None = Field(default=None, max_length=256, description="Accepted, not stored.")
    moderation: Literal["low", "auto"] | None = Field(
        default=None, description="GPT Image's filtering level; passed to vendors that take it."
    )
    input_fidelity: Literal["high", "low"] | None = Field(
        default=None,
        description="Edits: how closely to keep the input's features; passed to vendors that "
        "take it.",
    )
    stream: bool | None = Field(
        default=None, description="Server-sent events, one completed event per image (base64)."
    )
    # darkroom's own (the openai package sends them with extra_body=)
    tool: str | None = Field(default=None, description="darkroom: a style tool (see /v1/catalog).")
    seed: JsonInt | None = Field(default=None, ge=0, le=MAX_SEED, description="darkroom: a seed.")

    @field_validator("model", "size", "quality", "style", "tool", mode="before")
    @classmethod
    def _blank_is_absent(cls, value: Any) -> Any:
        return None if value == "" else value


class GenerationRequest(ImageRequest):
    image: str | list[str] | None = Field(
        default=None, description="Source image(s) to edit: URL, base64 or data URL."
    )
    mask: str | None = Field(
        default=None, description="darkroom: a mask for `image` (URL, base64 or data URL)."
    )


# One server-sent event of a streamed answer: ``image_generation.completed`` (or
# ``image_edit.completed``) with the image, or ``error``; its data is a JSON object.
SSE_EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {
            "type": "string",
            "enum": ["image_generation.completed", "image_edit.completed", "error"],
        },
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {"type": "object"},
        },
    },
}

IMAGE_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The images (JSON), or with stream: true server-sent events.",
        "content": {"text/event-stream": {"schema": SSE_EVENT}},
    },
    **answers(401, 402, 403, 409, 422, 429, 500, 504),
}


@router.post(
    "/v1/images/generations",
    openapi_extra=body_schema(GenerationRequest),
    responses=IMAGE_ANSWERS,
)
@router.post(
    "/api/images/generations",
    openapi_extra=body_schema(GenerationRequest),
    responses=IMAGE_ANSWERS,
)
async def generate_images(
    request: Request,
    who: PrincipalDep,
    services: ServicesDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Response:
    body = await json_body(request, GenerationRequest)
    images = [body.image] if isinstance(body.image, str) else list(body.image or [])
    sources = SourceSet(
        images=[Source.text(value, "image") for value in images],
        mask=None if body.mask is None else Source.text(body.mask, "mask"),
    )
    request_hash = fingerprint(body) if idempotency_key is not None else None
    return await _render(request, who, services, body, sources, idempotency_key, request_hash)


EDIT_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image", "prompt"],
                    "properties": {
                        "image": {
                            "description": "The image(s) to edit (repeat the part, or image[]).",
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "minItems": 1,
                            "maxItems": MAX_SOURCES,
                        },
                        "mask": {"type": "string", "format": "binary"},
                        **form_fields(
                            body_schema(ImageRequest)["requestBody"]["content"]["application/json"][
                                "schema"
                            ]
                        ),
                    },
                }
            }
        },
    }
}


@router.post("/v1/images/edits", openapi_extra=EDIT_FORM, responses=IMAGE_ANSWERS)
@router.post("/api/images/edits", include_in_schema=False)
async def edit_images(
    request: Request,
    who: PrincipalDep,
    services: ServicesDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Response:
    limit = services.settings.source_max_bytes
    try:
        form = await request.form(max_files=MAX_SOURCES + 1, max_fields=64, max_part_size=1 << 20)
    except Exception as exc:  # malformed multipart: python-multipart and Starlette raise several
        raise InvalidRequest(f"malformed multipart/form-data body: {exc}") from None
    fields: dict[str, str] = {}
    given: dict[str, list[Source]] = {"image": [], "mask": []}
    identity: list[bytes] = []  # what makes two requests the same, for an Idempotency-Key
    try:
        for key, value in form.multi_items():
            name = key.removesuffix("[]")
            if name in given:  # a file, or a URL / base64 text
                if isinstance(value, UploadFile):
                    data = await _read_upload(value, limit, name)
                    source = Source.file(data, name)
                else:
                    data = value.encode()
                    source = Source.text(value, name)
                given[name].append(source)
                identity.append(hashlib.sha256(data).digest())
            elif isinstance(value, UploadFile):
                raise InvalidRequest(f"unexpected file field {key!r}", field=key)
            else:
                fields[name] = value
    finally:
        await form.close()
    try:
        body = ImageRequest.model_validate(typed_fields(ImageRequest, fields))
    except ValidationError as exc:
        message, field = validation_message(exc.errors())
        raise InvalidRequest(message, field=field) from None
    if not given["image"]:
        raise InvalidRequest("image is required: the image to edit", field="image")
    if len(given["mask"]) > 1:
        raise InvalidRequest("send at most one mask", field="mask")
    sources = SourceSet(images=given["image"], mask=given["mask"][0] if given["mask"] else None)
    request_hash = None
    if idempotency_key is not None:
        identity.insert(0, fingerprint(body).encode())
        request_hash = hashlib.sha256(b"\0".join(identity)).hexdigest()
    return await _render(request, who, services, body, sources, idempotency_key, request_hash)


async def _render(
    request: Request,
    who: Principal,
    services: Services,
    body: ImageRequest,
    sources: SourceSet,
    idempotency_key: str | None,
    request_hash: str | None,
) -> Response:
    """Create the project, wait for it and answer: what every image request of this dialect
    does."""
    order = Order(
        ask=OpenAIImages(
            prompt=body.prompt,
            n=body.n,
            model=body.model,
            quality=body.quality,
            size=body.size,
            style=body.style,
            tool=body.tool,
            background=body.background,
            edit=bool(sources.images),
            source_count=len(sources.images),
        ),
        seed=body.seed,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        output_format=body.output_format or "png",
        output_compression=body.output_compression,
        sources=sources,
        # What the caller asked of a vendor beyond the prompt (passed to those that take it).
        options={
            name: value
            for name, value in (
                ("moderation", body.moderation),
                ("input_fidelity", body.input_fidelity),
            )
            if value is not None
        },
        awaited=True,  # canceled and refunded if this process dies before answering
    )
    project = await services.creation.create(who, order)
    if body.stream:
        return results.event_stream(who, services, project, edit=bool(sources.images))
    project = await services.creation.deliver(who, project, abandoned=request.is_disconnected)
    return await results.json_answer(project, body.response_format or "url", services)


async def _read_upload(upload: UploadFile, limit: int, field: str) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise InvalidRequest(f"{field} is larger than {limit / 1024 / 1024:g} MB", field=field)
    return data
