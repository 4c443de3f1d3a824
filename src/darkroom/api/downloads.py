"""Signed download links: served without an API key while the signature holds and the project
still has the image. From a local store darkroom sends the file; from a bucket it redirects to
a presigned URL (or, with ``DARKROOM_STORAGE_LINKS=proxy``, relays the bytes)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import iterate_in_threadpool

from darkroom.api.deps import ServicesDep
from darkroom.api.document import answers
from darkroom.core.downloads import DOWNLOAD_PATH, LocalFile, Redirect, content_type

router = APIRouter(tags=["Downloads"])


IMAGE = {"schema": {"type": "string", "format": "binary"}}


@router.get(
    DOWNLOAD_PATH + "/{name}",
    response_class=Response,
    responses={
        200: {
            "description": "The image.",
            "content": {"image/png": IMAGE, "image/jpeg": IMAGE, "image/webp": IMAGE},
        },
        307: {"description": "A presigned link to the image in the bucket."},
        **answers(403, 404, 410),
    },
)
async def download(
    name: str, services: ServicesDep, expires: str = "", signature: str = ""
) -> Response:
    served = await asyncio.to_thread(services.downloads.open, name, expires, signature)
    if isinstance(served, LocalFile):
        return FileResponse(served.path, media_type=content_type(name), filename=name)
    if isinstance(served, Redirect):
        # Not cached: a link of a project deleted meanwhile must stop working at once.
        return RedirectResponse(served.url, status_code=307, headers={"Cache-Control": "no-store"})
    return StreamingResponse(
        iterate_in_threadpool(served.chunks),
        media_type=content_type(name),
        headers={
            "Content-Length": str(served.length),
            "Content-Disposition": f'attachment; filename="{name}"',
        },
    )
