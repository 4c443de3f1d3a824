"""File uploads, as the published SDK's ``client.v1.files.upload_file`` makes them:
``POST /v1/files/upload-urls`` hands out an upload URL and a ``file_path`` per file, the client
``PUT``s the bytes to the URL (no API key), and passes the ``file_path`` (``api-assets/...``) in
an editor's ``assets``. On a bucket the URL is a presigned S3 ``PUT``; otherwise darkroom takes
the ``PUT`` itself, at ``/v1/files/uploads/<name>`` (see :mod:`darkroom.core.uploads`)."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from darkroom.api.deps import PrincipalDep, ServicesDep, body_schema, json_body
from darkroom.api.document import answers
from darkroom.core.uploads import MAX_ITEMS, UPLOAD_PATH

router = APIRouter(tags=["Files"])


class UploadItem(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    # Magic Hour also takes video and audio (for its other tools); darkroom takes images only.
    type: Literal["image"] = Field(description="image (video and audio are not taken here).")
    extension: Literal["png", "jpg", "jpeg", "webp", "avif", "bmp", "tif", "tiff"] = Field(
        description="The file's extension, without the dot."
    )


class UploadUrlsBody(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    items: list[UploadItem] = Field(min_length=1, max_length=MAX_ITEMS)


UPLOAD_URLS_ANSWER = {
    200: {
        "description": "One upload per item, in order.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["items"],
                    "properties": {
                        "items": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["upload_url", "expires_at", "file_path"],
                                "properties": {
                                    "upload_url": {"type": "string"},
                                    "expires_at": {"type": "string", "format": "date-time"},
                                    "file_path": {"type": "string", "pattern": "^api-assets/"},
                                },
                            },
                        }
                    },
                }
            }
        },
    },
    **answers(401, 429),
}


@router.post(
    "/v1/files/upload-urls",
    responses=UPLOAD_URLS_ANSWER,
    openapi_extra=body_schema(UploadUrlsBody),
)
async def upload_urls(request: Request, who: PrincipalDep, services: ServicesDep) -> Any:
    """URLs to upload files to (a ``PUT`` of the bytes, no API key), and the ``file_path`` each
    upload is then named by; both expire after ``DARKROOM_UPLOAD_TTL_SECONDS``."""
    body = await json_body(request, UploadUrlsBody)
    await services.limiter.check_async(who.key_id)
    items: list[tuple[str, str]] = [(item.type, item.extension) for item in body.items]
    tickets = await asyncio.to_thread(services.uploads.create, who, items)
    return {
        "items": [
            {
                "upload_url": ticket.upload_url,
                "expires_at": ticket.expires_at.isoformat(timespec="milliseconds").replace(
                    "+00:00", "Z"
                ),
                "file_path": ticket.file_path,
            }
            for ticket in tickets
        ]
    }


@router.put(
    UPLOAD_PATH + "/{name}",
    status_code=200,
    response_class=Response,
    responses={
        200: {"description": "Stored."},
        **answers(403),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def put_upload(
    name: str, request: Request, services: ServicesDep, expires: str = "", signature: str = ""
) -> Response:
    """The bytes of an upload, to an upload URL of darkroom's (signed, expiring; no API key):
    an image of at most ``DARKROOM_UPLOAD_MAX_BYTES``. Anything else is refused, and nothing
    is stored."""
    data = await request.body()
    await asyncio.to_thread(services.uploads.receive, name, expires, signature, data)
    return Response(status_code=200)
