"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from darkroom.api.deps import ServicesDep

router = APIRouter(tags=["Health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(services: ServicesDep) -> JSONResponse:
    checks: dict[str, Any] = {"workers": services.runner.running}
    try:
        with services.db.read() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = True
    except Exception as exc:
        checks["database"] = False
        checks["database_error"] = type(exc).__name__
    checks["backends"] = services.runner.backends.names()
    checks["queue_depth"] = services.queue.depth()
    ready = bool(checks["workers"] and checks["database"])
    return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)
