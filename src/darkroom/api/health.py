"""Liveness (``/healthz``: the process answers) and readiness (``/readyz``: the database and the
image storage answer, the render workers and the webhook sender run; with the backends and what
each has loaded)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from darkroom.api.deps import ServicesDep
from darkroom.engine.registry import Backends

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
def readyz(services: ServicesDep) -> JSONResponse:
    # A plain function (run on a thread): an unreachable database may take a while to say so.
    checks: dict[str, Any] = {"workers": services.runner.running}
    try:
        with services.db.read() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = True
    except Exception as exc:
        checks["database"] = False
        checks["database_error"] = type(exc).__name__
    # Like the workers: a process without workers leaves the sending to the one with them.
    checks["webhooks"] = services.sender.running or services.settings.workers == 0
    problem = services.downloads.storage_problem()
    checks["storage"] = problem is None
    checks["storage_location"] = services.files.store.location
    if problem is not None:
        checks["storage_error"] = problem
    checks["backends"] = backends_report(services.runner.backends)
    checks["heartbeat"] = services.heartbeat.running
    checks["notifications"] = "listen" if services.notifier.cross_process else "poll"
    checks["node"] = {"id": services.node.id, "kind": services.node.kind}
    if checks["database"]:
        checks["queue_depth"] = services.jobs.queue_depth()
    ready = all(
        checks[name] for name in ("workers", "database", "storage", "webhooks", "heartbeat")
    )
    return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)


def backends_report(backends: Backends) -> dict[str, dict[str, Any]]:
    """Each backend by name: the models it holds in memory (a backend that loads weights says
    which, and on which device it was asked to run), or simply loaded (the preview backend)."""
    report: dict[str, dict[str, Any]] = {}
    for name in backends.names():
        backend = backends.get(name)
        loaded = getattr(backend, "loaded", None)
        models = getattr(backend, "models", None)
        if callable(models):  # a vendor's API: whether each model can be served ("ready")
            report[name] = {"models": models()}
        elif callable(loaded):
            report[name] = {
                "loaded_models": loaded(),
                "device": getattr(backend, "device_setting", None),
            }
        else:
            report[name] = {"loaded": True}
    return report
