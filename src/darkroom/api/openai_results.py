"""How the OpenAI dialect renders its answer once a project is charged and queued: the images as
one JSON body, or (``stream: true``) as server-sent events, one ``image_generation.completed``
(or ``image_edit.completed``) event per image.

The waiting, the cancel and refund of a job whose answer cannot be handed over, and the mark
that the answer was written (until then, should this process die, recovery refunds it even if it
completed meanwhile) are the core's (:meth:`darkroom.core.creation.Creation.deliver` and
:meth:`~darkroom.core.creation.Creation.delivered`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from darkroom.api.errors import openai_error, status_of
from darkroom.core.accounts import Principal
from darkroom.core.errors import DomainError
from darkroom.core.projects import Project
from darkroom.services import Services

KEEP_ALIVE_SECONDS = 10.0  # an SSE comment this often while waiting keeps proxies from timing out


async def json_answer(project: Project, response_format: str, services: Services) -> JSONResponse:
    data: list[dict[str, Any]]
    if response_format == "b64_json":
        data = [{"b64_json": b64} for b64 in await _encoded(services, project)]
    else:
        expires = int(time.time()) + services.settings.sync_url_ttl_seconds
        data = [
            {"url": services.downloads.url(project, n, expires)}
            for n in range(1, project.image_count + 1)
        ]
    if project.final_prompt != project.prompt:
        for item in data:
            item["revised_prompt"] = project.final_prompt
    body = {"created": int(project.created_at.timestamp()), "data": data, **_about(project)}
    # Run once the body is written (Starlette runs a response's background task after it).
    delivered = BackgroundTask(services.creation.delivered, project.id)
    return JSONResponse(body, headers=_headers(project), background=delivered)


def event_stream(
    who: Principal, services: Services, project: Project, *, edit: bool
) -> StreamingResponse:
    """The images as server-sent events, as OpenAI streams them (always base64)."""
    kind = "image_edit" if edit else "image_generation"

    async def events() -> AsyncIterator[str]:
        done = False
        try:
            waiting = asyncio.ensure_future(services.creation.deliver(who, project))
            while not waiting.done():
                await asyncio.wait({waiting}, timeout=KEEP_ALIVE_SECONDS)
                if not waiting.done():
                    yield ": waiting for the images\n\n"
            try:
                ended = waiting.result()
                images = await _encoded(services, ended)
            except DomainError as exc:
                done = True
                response = openai_error(status_of(exc), exc)
                yield _event("error", json.loads(bytes(response.body)))
                return
            for b64 in images:
                completed = {"type": f"{kind}.completed", "b64_json": b64, **_about(ended)}
                completed["created_at"] = int(ended.created_at.timestamp())
                yield _event(f"{kind}.completed", completed)
            done = True  # every event is written (the generator resumed after the last one)
            await run_in_threadpool(services.creation.delivered, ended.id)
        finally:
            if not done:  # the caller went away: the wait stops, and the job with it
                waiting.cancel()
                await services.creation.abandon(who, project, "refund: stream closed")

    return StreamingResponse(events(), media_type="text/event-stream", headers=_headers(project))


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _about(project: Project) -> dict[str, Any]:
    """The fields of an answer besides the images, and darkroom's own (which OpenAI clients
    ignore): the project behind the answer."""
    return {
        "background": "opaque",
        "output_format": project.output_format,
        "size": f"{project.width}x{project.height}",
        "darkroom": {
            "project_id": project.id,
            "model": project.model,
            "backend": project.backend,
            "credits_charged": project.credits_charged,
            "seed": project.seed,
            "render_ms": project.render_ms,
        },
    }


def _headers(project: Project) -> dict[str, str]:
    return {
        "x-darkroom-project-id": project.id,
        "x-darkroom-credits-charged": str(project.credits_charged),
    }


async def _encoded(services: Services, project: Project) -> list[str]:
    images = await asyncio.to_thread(services.downloads.images, project)
    return [base64.b64encode(data).decode() for data in images]
