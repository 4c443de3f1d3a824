"""``app_for(services, node)``: the darkroom HTTP service over the services it was built with
(:func:`darkroom.node.build`), starting and stopping the node beside it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from darkroom import __version__
from darkroom.api import (
    account,
    admin,
    catalog,
    catalog_values,
    document,
    downloads,
    editor,
    errors,
    files,
    health,
    magichour,
    metrics,
    openai_images,
    playground,
    webhooks,
)
from darkroom.api.body_limit import BodyLimitMiddleware
from darkroom.api.patience import Patience
from darkroom.core.readiness import RunningNode
from darkroom.core.uploads import UPLOAD_PATH
from darkroom.observe.middleware import RequestMiddleware
from darkroom.observe.redaction import RevealSecrets, SpanSafeFastAPI
from darkroom.services import Services


def app_for(services: Services, node: RunningNode) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await node.start()
        try:
            yield
        finally:
            await node.stop()
            services.close()

    app = SpanSafeFastAPI(  # a request's signed link and key reach no trace span
        title="darkroom",
        version=__version__,
        description=(
            "Self-hosted image generation: the Magic Hour v1 image API and the OpenAI images API."
        ),
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.core = services.core
    app.state.node = node
    errors.install(app)
    document.install(app, services.catalog, errors.OPENAI_PATHS, refine=[catalog_values.refine])
    settings = services.settings
    app.add_middleware(  # inside RequestMiddleware: a 413 is logged and has a request id
        BodyLimitMiddleware,
        limit=settings.http_body_max_bytes,
        source_limit=settings.source_body_max_bytes,
        source_paths=openai_images.SOURCE_PATHS,
        stall_seconds=settings.http_body_timeout_seconds,
        prefix_limits={UPLOAD_PATH + "/": settings.upload_max_bytes},
    )
    app.add_middleware(Patience, seconds=settings.database_request_seconds)
    app.add_middleware(RequestMiddleware, metrics=services.metrics)
    app.add_middleware(RevealSecrets)  # the outermost: the routes get what the client sent
    app.include_router(metrics.router)
    modules = (
        health,
        magichour,
        editor,
        openai_images,
        files,
        catalog,
        account,
        downloads,
        admin,
        webhooks,
    )
    for module in (*modules, playground):
        app.include_router(module.router)
    return app
