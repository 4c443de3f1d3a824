"""``GET /metrics``: the Prometheus scrape (text format, or OpenMetrics when the scraper asks)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from darkroom.api.deps import CoreDep

router = APIRouter(tags=["Health"])


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, core: CoreDep) -> Response:
    # A plain function: FastAPI runs it on a thread, so the database read of the scrape never
    # holds up the event loop.
    body, content_type = core.metrics.exposition(request.headers.get("accept"))
    return Response(body, headers={"content-type": content_type})
