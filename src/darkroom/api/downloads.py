"""Signed download links: served without an API key while the signature holds."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from darkroom.api.deps import ServicesDep
from darkroom.core.errors import LinkRefused, NotFound
from darkroom.engine.encode import media_type
from darkroom.storage.files import parse_output_name
from darkroom.storage.signing import DOWNLOAD_PATH

router = APIRouter(tags=["Downloads"])


@router.get(DOWNLOAD_PATH + "/{name}")
async def download(
    name: str, services: ServicesDep, expires: str = "", signature: str = ""
) -> FileResponse:
    if not services.signer.verify(name, expires, signature):
        raise LinkRefused("This download link is invalid or has expired")
    path = services.files.path(name)
    parsed = parse_output_name(name)
    if parsed is None or not path.is_file():
        raise NotFound()
    return FileResponse(path, media_type=media_type(parsed[2]), filename=name)
