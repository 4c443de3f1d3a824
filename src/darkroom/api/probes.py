"""The small HTTP listener of a process that serves no API (``darkroom worker --metrics-port``):
``/healthz``, ``/readyz`` and ``/metrics``, answered by the same routes as an API node's, so that
a GPU node has a health check and its render and webhook metrics are scraped.

It runs its own event loop on a thread of its own: a worker's loop busy with renders and sends
never delays a probe (a liveness check that times out gets a healthy node restarted).
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn
from fastapi import FastAPI

from darkroom.api import health, metrics
from darkroom.api.server import config_for
from darkroom.core.readiness import RunningNode
from darkroom.services import Core

log = logging.getLogger("darkroom.worker")

START_SECONDS = 20.0


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, bound now, so that a port in use stops the start
    with one line (ValueError) before anything else is started."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ValueError(
            f"--metrics-port {port}: cannot listen on {host}:{port} ({exc.strerror or exc})"
        ) from None
    sock.listen(128)
    return sock


def probe_app(core: Core, node: RunningNode) -> FastAPI:
    app = FastAPI(title="darkroom worker", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.core = core
    app.state.node = node
    app.include_router(health.router)
    app.include_router(metrics.router)
    return app


class ProbeListener:
    """``probe_app`` served on ``sock`` by uvicorn, on a thread, from :meth:`start` to
    :meth:`stop`."""

    def __init__(self, core: Core, node: RunningNode, sock: socket.socket) -> None:
        settings = core.settings
        self.sock = sock
        self.server = uvicorn.Server(
            config_for(
                probe_app(core, node),
                settings,
                log_level=settings.log_level,
                access_log=False,
                log_config=None,  # through darkroom's logging set-up
                lifespan="off",  # the worker starts and stops the node itself
            )
        )
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="probes", daemon=True
        )

    @property
    def address(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + START_SECONDS
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the worker's listener on {self.address} did not start")
            time.sleep(0.01)
        log.info("health and metrics on %s (/healthz, /readyz, /metrics)", self.address)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
