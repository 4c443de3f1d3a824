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
    )
    if settings.workers < 1:
        raise ValueError("a worker needs --concurrency 1 or more")
    configure_logging(settings)
    core = build_core(settings, serves_api=False)
    unknown = sorted(set(settings.worker_models) - set(core.catalog.models))
    if unknown:
        core.close()
        raise ValueError(f"--models: the catalog has no model {', '.join(unknown)}")
    try:
        asyncio.run(_serve(build_node(core)))
    finally:
        core.close()
    return 0


async def _serve(node: NodeProcess) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    await node.start()
    member = node.core.node
    models = ", ".join(member.models or ["every model"])
    log.info("worker %s rendering %s, %d at a time", member.id, models, member.concurrency)
    try:
        await stop.wait()
        log.info("draining: jobs in hand finish or are handed back")
    finally:
        await node.stop()
    log.info("worker %s stopped", member.id)
