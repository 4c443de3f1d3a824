"""The Magic Hour v1 image API: ``POST /v1/ai-image-generator`` and ``/v1/image-projects/{id}``,
exactly as the published ``magic_hour`` SDK sends and expects them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from darkroom.api.deps import PrincipalDep, ServicesDep, body_schema, fingerprint, json_body
from darkroom.api.document import answers, prompt_field
from darkroom.api.forms import JsonInt
from darkroom.core import project_view
from darkroom.core.catalog import ImageSpec
from darkroom.core.creation import Order
from darkroom.core.errors import AlreadyEnded
from darkroom.core.jobs import MAX_PAGE
from darkroom.core.projects import MAX_SEED, Project
from darkroom.core.status import Status
from darkroom.services import Services

router = APIRouter(tags=["Magic Hour v1"])


class StyleBody(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    prompt: str = prompt_field("The prompt used for the image(s).")
    tool: str | None = Field(default=None, description="Style tool; `general` when absent.")
    quality_mode: str | None = Field(
        default=None, description="Deprecated: `standard` or `pro`; `model` wins."
    )


class CreateImageBody(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    image_count: JsonInt = Field(ge=1, le=16, description="Number of images; allowed values vary.")
    style: StyleBody
    model: str | None = Field(default=None, description="`default` or a catalog model.")
    aspect_ratio: str | None = Field(default=None, description="`1:1` (default), `16:9`, `9:16`.")
    orientation: str | None = Field(
        default=None, description="Deprecated: landscape, portrait, square; aspect_ratio wins."
    )
    resolution: str | None = Field(default=None, description="640px, 1k, 2k, 4k or auto.")
    name: str | None = Field(default=None, max_length=500)
    seed: JsonInt | None = Field(
        default=None, ge=0, le=MAX_SEED, description="darkroom: a seed for reproducible images."
    )

    def spec(self) -> ImageSpec:
        return ImageSpec(
            prompt=self.style.prompt,
            image_count=self.image_count,
            model=self.model,
            aspect_ratio=self.aspect_ratio,
            orientation=self.orientation,
            quality_mode=self.style.quality_mode,
            resolution=self.resolution,
            tool=self.style.tool,
        )


class CreateImageResponse(BaseModel):
    id: str
    credits_charged: int
    frame_cost: int


@router.post(
    "/v1/ai-image-generator",
    response_model=CreateImageResponse,
    responses=answers(401, 402, 403, 422, 429),
    openapi_extra=body_schema(CreateImageBody),
)
async def create_image(
    request: Request,
    who: PrincipalDep,
    services: ServicesDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JSONResponse:
    body = await json_body(request, CreateImageBody)
    order = Order(
        ask=body.spec(),
        name=body.name,
        seed=body.seed,
        idempotency_key=idempotency_key,
        # Only a retry with the same Idempotency-Key compares bodies.
        request_hash=fingerprint(body) if idempotency_key is not None else None,
    )
    project = await services.creation.create(who, order)
    return created(project)


def created(project: Project) -> JSONResponse:
    """The answer to a create (the generator's and the editor's), as the SDK parses it."""
    return JSONResponse(
        {
            "id": project.id,
            "credits_charged": project.credits_charged,
            "frame_cost": project.credits_charged,  # deprecated, and required by the SDK
        }
    )


MAX_WAIT_SECONDS = 60.0


@router.get("/v1/image-projects", responses=answers(401))
def list_projects(
    who: PrincipalDep,
    services: ServicesDep,
    limit: Annotated[
        int,
        Query(
            description=f"Projects in this page (1 to {MAX_PAGE}).",
            json_schema_extra={"minimum": 1, "maximum": MAX_PAGE},
        ),
    ] = 20,
    before: Annotated[
        str | None,
        Query(
            description="The id of the last project of the previous page: this page holds the "
            "projects created before it."
        ),
    ] = None,
    status: Annotated[Status | None, Query(description="Only projects in this status.")] = None,
) -> dict[str, Any]:
    """darkroom: the key's account's projects, newest first, a page at a time (deleted ones
    are not listed). ``next_before`` is the ``before`` of the next page while ``has_more``."""
    projects, more = services.jobs.page(
        who.account_id, limit=limit, before=before or None, status=status
    )
    return {
        "data": [project_body(project, services) for project in projects],
        "has_more": more,
        "next_before": projects[-1].id if more else None,
    }


@router.get("/v1/image-projects/{project_id}", responses=answers(401, 404))
async def get_project(
    project_id: str,
    who: PrincipalDep,
    services: ServicesDep,
    wait: Annotated[
        float | None,
        Query(
            ge=0,
            le=MAX_WAIT_SECONDS,
            description="darkroom: a long poll. Answer as soon as the project is complete, "
            "error or canceled, or after this many seconds at the latest.",
        ),
    ] = None,
    since: Annotated[
        Status | None,
        Query(
            description="darkroom: with wait, answer as soon as the status is no longer this "
            "one (so a client sees queued → rendering at once), or the project has ended.",
        ),
    ] = None,
) -> dict[str, Any]:
    if wait:
        # No check for a caller that left: the wait is bounded (60 s) and costs nothing.
        project = await services.watch.until_terminal(who.account_id, project_id, wait, since=since)
    else:
        project = await run_in_threadpool(services.jobs.get, who.account_id, project_id)
    body = project_body(project, services)
    place = await run_in_threadpool(services.jobs.queue_place, project)
    if place is not None:  # darkroom's additions, while queued
        body["queue_position"], body["eta_seconds"] = place
    return body


@router.post("/v1/image-projects/{project_id}/cancel", responses=answers(401, 404, 409))
def cancel_project(project_id: str, who: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    """darkroom: stop a queued or rendering project and refund it in full; the worker stops at
    its next step. Canceling a canceled project answers it again; a project that already
    completed or failed is a 409."""
    project = services.jobs.cancel(who.account_id, project_id, "refund: canceled by the caller")
    if project.status in (Status.COMPLETE, Status.ERROR):
        raise AlreadyEnded(
            f"project {project_id} already ended ({project.status.value}); only queued or "
            "rendering projects can be canceled"
        )
    return project_body(project, services)


@router.delete("/v1/image-projects/{project_id}", status_code=204, responses=answers(401, 404))
def delete_project(project_id: str, who: PrincipalDep, services: ServicesDep) -> Response:
    services.jobs.delete(who.account_id, project_id)
    return Response(status_code=204)


def project_body(project: Project, services: Services) -> dict[str, Any]:
    """The GET project object, with its download links."""
    return project_view.project_body(
        project, services.downloads, services.settings.download_ttl_seconds
    )
