"""The Magic Hour image editor: ``POST /v1/ai-image-editor``, as the published SDK's
``client.v1.ai_image_editor.create/generate`` sends it.

``assets.image_file_paths`` (up to 10; the deprecated ``image_file_path`` when it is absent) are
URLs, fetched as the OpenAI dialect fetches them (never from private addresses), or the
``file_path`` of files uploaded through ``POST /v1/files/upload-urls``. They are checked (the
caller's, not expired, images) and the model's limit on input images applied before anything is
charged. The project is an ordinary one, the OpenAI dialect's edits' kind: the same answer as the
generator's, ``GET /v1/image-projects/{id}``, downloads, webhooks, credits charged up front and
refunded on failure. ``aspect_ratio`` ``auto`` (the default) gives the images the first input's
shape.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from darkroom.api.deps import PrincipalDep, ServicesDep, body_schema, fingerprint, json_body
from darkroom.api.document import answers, prompt_field
from darkroom.api.forms import JsonInt
from darkroom.api.magichour import CreateImageResponse, created
from darkroom.core.catalog import ImageSpec
from darkroom.core.creation import Order
from darkroom.core.errors import InvalidRequest
from darkroom.core.projects import MAX_SEED
from darkroom.core.sources import Source, SourceSet

router = APIRouter(tags=["Magic Hour v1"])

MAX_ASSETS = 10  # the published API's limit on image_file_paths
FIELD = "assets.image_file_paths"
# Where "auto" is planned before the inputs are read (their shape is known only then).
PROVISIONAL_SHAPE = (1024, 1024)


class EditorAssets(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    image_file_paths: list[Annotated[str, Field(min_length=1, max_length=4096)]] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ASSETS,
        description="The image(s) to edit, first the one edited: URLs, or file_path values "
        "from POST /v1/files/upload-urls (at most 10; each model takes its own maximum).",
    )
    image_file_path: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="Deprecated: one image; used when image_file_paths is absent.",
    )

    def paths(self) -> list[str]:
        if self.image_file_paths:
            return list(self.image_file_paths)
        return [self.image_file_path] if self.image_file_path else []


class EditorStyle(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    prompt: str = prompt_field("How to edit the image(s).")
    model: str | None = Field(
        default=None, description="Deprecated: Nano Banana, Seedream or default; `model` wins."
    )


class EditImageBody(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    assets: EditorAssets
    style: EditorStyle
    model: str | None = Field(default=None, description="`default` or a model that edits.")
    aspect_ratio: str | None = Field(
        default=None,
        description="auto (the default: the first image's shape), 1:1, 16:9, 9:16, 4:3, 3:2, "
        "2:3 or 4:5.",
    )
    resolution: str | None = Field(default=None, description="640px, 1k, 2k, 4k or auto.")
    image_count: JsonInt | None = Field(
        default=None, ge=1, le=16, description="Images to make (1 by default; per model)."
    )
    name: str | None = Field(default=None, max_length=500)
    seed: JsonInt | None = Field(
        default=None, ge=0, le=MAX_SEED, description="darkroom: a seed for reproducible images."
    )


@router.post(
    "/v1/ai-image-editor",
    response_model=CreateImageResponse,
    responses=answers(401, 402, 403, 422, 429),
    openapi_extra=body_schema(EditImageBody),
)
async def edit_image(
    request: Request,
    who: PrincipalDep,
    services: ServicesDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JSONResponse:
    body = await json_body(request, EditImageBody)
    paths = body.assets.paths()
    if not paths:
        raise InvalidRequest(f"{FIELD} must name at least one image to edit", field=FIELD)
    spec = ImageSpec(
        prompt=body.style.prompt,
        image_count=body.image_count or 1,
        model=body.model or services.catalog.edit_style_model(body.style.model),
        aspect_ratio=body.aspect_ratio or "auto",
        resolution=body.resolution,
        edit=True,
        source_count=len(paths),
        follow=PROVISIONAL_SHAPE,  # then the first input's shape, once it is read
    )
    order = Order(
        ask=spec,
        name=body.name or f"Ai Image Editor - {datetime.now(UTC):%Y-%m-%d %H:%M:%S}",
        seed=body.seed,
        idempotency_key=idempotency_key,
        request_hash=fingerprint(body) if idempotency_key is not None else None,
        sources=SourceSet(images=[Source.text(p, f"{FIELD}[{i}]") for i, p in enumerate(paths)]),
        uploaded_sources=True,
    )
    return created(await services.creation.create(who, order))
