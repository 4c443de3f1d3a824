"""How the OpenAI dialect answers once a project is charged and queued: it waits for the job and
returns the images as one JSON body, or (``stream: true``) as server-sent events, one
``image_generation.completed`` (or ``image_edit.completed``) event per image.

A job still running when ``sync_timeout_seconds`` pass, or whose caller hung up, is canceled and
refunded: nobody pays for images they never received. Once the answer is written, the project is
marked delivered (``Jobs.answered``); until then, should this process die, recovery refunds it
even if it completed meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from darkroom.api.errors import openai_error, status_of
from darkroom.core.accounts import Principal
from darkroom.core.errors import DarkroomError, JobCanceled, JobFailed, JobTimedOut
from darkroom.core.projects import Project
from darkroom.core.status import Status
from darkroom.services import Services
from darkroom.store.deadline import wait_out

log = logging.getLogger("darkroom.api")

KEEP_ALIVE_SECONDS = 10.0  # an SSE comment this often while waiting keeps proxies from timing out


async def finished(
    who: Principal,
    services: Services,
    project: Project,
    *,
    limit: float | None = None,
    abandoned: Callable[[], Awaitable[bool]] | None = None,
) -> Project:
    """The project once complete; a job still running after ``limit`` seconds (default: the
    configured wait) or once ``abandoned()`` is canceled and refunded. A job that did not complete
    raises the matching :class:`JobNotDone`."""
    # Charged, and waiting for the images: the database calls from here wait an outage out
    # rather than answer a 503 that the client would meet by paying for the images again.
    wait_out()
    wait = services.settings.sync_timeout_seconds if limit is None else limit
    project = await services.watch.until_terminal(
        who.account_id, project.id, wait, abandoned=abandoned
    )
    if not project.status.terminal:
        charged = project.credits_charged
        project = await run_in_threadpool(
            services.jobs.cancel, who.account_id, project.id, "refund: sync wait ended"
        )
        if project.status is not Status.COMPLETE:  # it may have finished just now
            raise JobTimedOut(
                f"the images were not ready within {wait:g} seconds; the job was canceled and "
                f"its {charged} credits refunded",
                project.id,
            )
    if project.status is Status.ERROR:
        raise JobFailed(
            f"image generation failed: {project.error_message or project.error_code}; "
            "the credits were refunded",
            project.id,
            project.error_code or "backend_error",
        )
    if project.status is Status.CANCELED:
        raise JobCanceled("the job was canceled before it finished; refunded", project.id)
    return project


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
    delivered = BackgroundTask(_delivered, services, project.id)
    return JSONResponse(body, headers=_headers(project), background=delivered)


def _delivered(services: Services, project_id: str) -> None:
    """Mark the project delivered now that its answer is written (on a thread)."""
    try:
        services.jobs.answered(project_id)
    except Exception:
        # Not marked: were this node to die before the mark is made, the images it handed over
        # would be refunded (the error that costs the caller nothing).
        log.exception("project %s: answered, but could not be marked delivered", project_id)


def event_stream(
    who: Principal, services: Services, project: Project, *, edit: bool
) -> StreamingResponse:
    """The images as server-sent events, as OpenAI streams them (always base64)."""
    kind = "image_edit" if edit else "image_generation"

    async def events() -> AsyncIterator[str]:
        done = False
        try:
            waiting = asyncio.ensure_future(finished(who, services, project))
            while not waiting.done():
                await asyncio.wait({waiting}, timeout=KEEP_ALIVE_SECONDS)
                if not waiting.done():
                    yield ": waiting for the images\n\n"
            try:
                ended = waiting.result()
                images = await _encoded(services, ended)
            except DarkroomError as exc:
                done = True
                response = openai_error(status_of(exc), exc)
                yield _event("error", json.loads(bytes(response.body)))
                return
            for b64 in images:
                completed = {"type": f"{kind}.completed", "b64_json": b64, **_about(ended)}
                completed["created_at"] = int(ended.created_at.timestamp())
                yield _event(f"{kind}.completed", completed)
            done = True  # every event is written (the generator resumed after the last one)
            await run_in_threadpool(_delivered, services, ended.id)
        finally:
            if not done:  # the caller went away: the wait stops, and the job with it
                waiting.cancel()
                # Shielded: this task is being cancelled, and the refund must still happen.
                with anyio.CancelScope(shield=True):
                    await run_in_threadpool(
                        services.jobs.cancel, who.account_id, project.id, "refund: stream closed"
                    )

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
