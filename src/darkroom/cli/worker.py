"""``darkroom worker``: a process that renders (and sends webhooks) without serving the API.

Run one per GPU (or pool of GPUs of one type) beside any number of ``darkroom serve --workers 0``
API nodes on the same database. SIGTERM (or Ctrl-C) drains it: no new job is claimed, the jobs in
hand finish within ``--grace`` seconds or are handed back to the queue at once for another worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
from typing import TYPE_CHECKING, Any

from darkroom.cli.options import add_data_options, settings_from
from darkroom.cli.serve import add_engine_options, parse_weights

if TYPE_CHECKING:
    from darkroom.node import NodeProcess

log = logging.getLogger("darkroom.worker")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "worker", help="render jobs queued by the API nodes (no HTTP server)"
    )
    parser.add_argument(
        "--models",
        type=_models,
        help="take only these models, comma-separated (DARKROOM_WORKER_MODELS; default: all)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        dest="workers",
        help="jobs rendered at once (DARKROOM_WORKERS, 2)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        dest="shutdown_grace_seconds",
        help="on SIGTERM, how long jobs in hand may run on before they are handed back "
        "(DARKROOM_SHUTDOWN_GRACE_SECONDS, 10)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="open a small HTTP listener on this port of DARKROOM_HOST (127.0.0.1) with "
        "/healthz, /readyz and /metrics (DARKROOM_METRICS_PORT; off by default)",
    )
    add_engine_options(parser)
    add_data_options(parser)
    parser.set_defaults(run=run)


def _models(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("--models wants model names, e.g. flux-schnell,sdxl")
    return names


def run(args: argparse.Namespace) -> int:
    from darkroom.node import build_node
    from darkroom.observe.logs import configure as configure_logging
    from darkroom.services import build_core

    os.umask(0o077)  # what this process writes is the owner's only (storage/permissions.py)
    args.weights = parse_weights(args.weights)
    args.worker_models = args.models
    settings = settings_from(
        args,
        "worker_models",
        "workers",
        "shutdown_grace_seconds",
        "preview_only",
        "weights",
        "device",
        "dtype",
        "metrics_port",
    )
    if settings.workers < 1:
        raise ValueError("a worker needs --concurrency 1 or more")
    configure_logging(settings)
    probes = None
    if settings.metrics_port is not None:
        from darkroom.api.probes import listen

        probes = listen(settings.host, settings.metrics_port)  # a port in use: said at once
    try:
        core = build_core(settings, serves_api=False)
        try:
            unknown = sorted(set(settings.worker_models) - set(core.catalog.models))
            if unknown:
                raise ValueError(f"--models: the catalog has no model {', '.join(unknown)}")
            asyncio.run(_serve(build_node(core), probes))
        finally:
            core.close()
    finally:
        if probes is not None:
            probes.close()
    return 0


async def _serve(node: NodeProcess, probes: socket.socket | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    await node.start()
    member = node.core.node
    listener = None
    try:
        if probes is not None:  # after the node started: /readyz then says how it is
            from darkroom.api.probes import ProbeListener

            listener = ProbeListener(node.core, node, probes)
            await asyncio.to_thread(listener.start)
        models = ", ".join(member.models or ["every model"])
        log.info("worker %s rendering %s, %d at a time", member.id, models, member.concurrency)
        await stop.wait()
        log.info("draining: jobs in hand finish or are handed back")
    finally:
        await node.stop()
        if listener is not None:  # answering (not ready) while it drained
            await asyncio.to_thread(listener.stop)
    log.info("worker %s stopped", member.id)
