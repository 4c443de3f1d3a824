"""The web playground at ``/``: one page of plain HTML, CSS and a JavaScript module, served from
the package (``darkroom/web``), over darkroom's own public API. Nothing comes from elsewhere (no
CDN, no web fonts), and a strict Content-Security-Policy says so: scripts, styles and requests
only from this server; images (and the uploads of an edit, presigned PUTs) also to and from the
bucket that presigned links point at."""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from darkroom.api.deps import ServicesDep
from darkroom.core.errors import NotFound

router = APIRouter(include_in_schema=False)

ASSETS = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}


@cache
def _read(name: str) -> bytes:
    return resources.files("darkroom.web").joinpath(name).read_bytes()


def _headers(image_origins: tuple[str, ...]) -> dict[str, str]:
    images = " ".join(["'self'", "data:", "blob:", *image_origins])
    requests = " ".join(["'self'", *image_origins])
    policy = "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {images}",
            f"connect-src {requests}",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


@router.get("/")
def index(services: ServicesDep) -> HTMLResponse:
    return HTMLResponse(_read("index.html"), headers=_headers(services.downloads.image_origins))


@router.get("/web/{name}")
def asset(name: str, services: ServicesDep) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFound()
    headers = _headers(services.downloads.image_origins)
    return Response(_read(name), media_type=media_type, headers=headers)
