"""Liveness (``/healthz``: the process answers) and readiness (``/readyz``: the database and the
image storage answer, the render workers and the webhook sender run; with the backends and what
each has loaded)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from darkroom.api.deps import CoreDep, NodeDep
from darkroom.core.readiness import readiness

router = APIRouter(tags=["Health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        503: {
            "description": "Not ready: the body says which check failed.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
def readyz(core: CoreDep, node: NodeDep) -> JSONResponse:
    # A plain function (run on a thread): an unreachable database may take a while to say so.
    ready, checks = readiness(core.db, core.downloads, node)
    return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)
