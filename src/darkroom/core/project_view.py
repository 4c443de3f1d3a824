"""The GET image-project object of the Magic Hour v1 API, as the published SDK parses it plus
darkroom's own keys: the answer of ``GET /v1/image-projects/{id}`` and the payload of webhooks.

It lives in ``core`` (not ``api``) because the webhook sender builds it too, and a worker-only
process runs without ``api/``."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from darkroom.core.downloads import Downloads
from darkroom.core.projects import Project
from darkroom.core.status import Status


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def downloads(project: Project, links: Downloads, ttl: int) -> list[dict[str, Any]]:
    if project.status is not Status.COMPLETE or project.outputs_deleted_at is not None:
        return []
    expires = int(time.time()) + ttl
    expires_at = iso(datetime.fromtimestamp(expires, UTC))
    items: list[dict[str, Any]] = [
        {"url": links.url(project, n, expires), "expires_at": expires_at}
        for n in range(1, project.image_count + 1)
    ]
    # darkroom: what each file must hash to, so that a client can verify its download.
    for item, stored in zip(items, project.stored_images, strict=False):
        item["sha256"] = stored.sha256
        item["bytes"] = stored.bytes
    return items


def project_body(project: Project, links: Downloads, ttl: int) -> dict[str, Any]:
    """The GET project object: every key the SDK's model requires, then darkroom's own.
    Download links come from ``links`` and work for ``ttl`` seconds."""
    error = None
    if project.status is Status.ERROR:
        error = {"code": project.error_code or "error", "message": project.error_message or ""}
    return {
        "id": project.id,
        "name": project.name,
        "status": project.status.value,
        "image_count": project.image_count,
        "type": "AI_IMAGE",
        "created_at": iso(project.created_at),
        "enabled": project.enabled,
        "credits_charged": project.credits_charged,
        "total_frame_cost": project.credits_charged,
        "downloads": downloads(project, links, ttl),
        "error": error,
        # darkroom's additions (ignored by the published SDK)
        "status_reason": project.status_reason,
        "model": project.model,
        "backend": project.backend,
        "resolution": project.resolution,
        "aspect_ratio": project.aspect_ratio,
        "width": project.width,
        "height": project.height,
        "tool": project.tool,
        "prompt": project.prompt,
        "final_prompt": project.final_prompt,
        "seed": project.seed,
        "output_format": project.output_format,
        "source_images": project.source_count,
        "started_at": iso(project.started_at),
        "completed_at": iso(project.completed_at),
        "render_ms": project.render_ms,
        "outputs_deleted_at": iso(project.outputs_deleted_at),
    }
