"""The node: what runs beside the API (or without it, in a worker), built from the
:class:`~darkroom.services.Core` that the process shares.

Every darkroom process is a node: it listens for signals from the others (the notifier), beats
its heartbeat (which renews the leases of its jobs and takes over what dead nodes left), and, if
it renders, runs the render workers and the webhook sender. ``darkroom serve`` builds the
:class:`~darkroom.services.Services` of the API and a node beside them (:func:`build`);
``darkroom worker`` builds a node alone.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from darkroom.core.recovery import Recovery
from darkroom.core.retention import Retention
from darkroom.core.work import Work
from darkroom.engine.registry import Backends
from darkroom.queue.heartbeat import Heartbeat
from darkroom.queue.notify import CHANGES, JOBS, WEBHOOKS, Notifier, Subscriber
from darkroom.services import Core, Services, build_core, build_services, upstream_models
from darkroom.settings import Settings
from darkroom.worker.runner import Runner
from darkroom.worker.webhook_sender import Policy, WebhookSender


@dataclass(frozen=True)
class NodeProcess:
    core: Core
    work: Work
    recovery: Recovery
    retention: Retention
    runner: Runner
    sender: WebhookSender
    heartbeat: Heartbeat
    notifier: Notifier

    @property
    def id(self) -> str:
        return self.core.node.id

    @property
    def kind(self) -> str:
        return self.core.node.kind

    async def start(self) -> None:
        """Start the notification listener, the heartbeat (which also takes over what dead
        nodes left), the render workers and, in a process that renders, the webhook sender."""
        settings = self.core.settings
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(threads_for(settings), "darkroom"))
        await asyncio.to_thread(self.notifier.start)
        await asyncio.to_thread(self.heartbeat.start)
        await self.runner.start()
        if settings.workers:  # the process that renders also sends the webhooks
            await self.sender.start()

    async def stop(self) -> None:
        """Stop in the reverse order: jobs in hand finish within the grace period or are handed
        back at once; the node is marked stopped so that nobody waits for its leases. (What the
        core holds, the database and the backends, its owner closes.)"""
        await self.sender.stop()
        await self.runner.stop(self.core.settings.shutdown_grace_seconds)
        await asyncio.to_thread(self.heartbeat.stop)
        self.notifier.stop()

    def report(self) -> dict[str, Any]:
        """What ``/readyz`` says of the node: whether its workers, webhook sender and heartbeat
        run, how signals reach it, and what each backend holds."""
        return {
            "workers": self.runner.running,
            # Like the workers: a process without workers leaves the sending to one with them.
            "webhooks": self.sender.running or self.core.settings.workers == 0,
            "backends": self.runner.backends.report(),
            "heartbeat": self.heartbeat.running,
            "notifications": "listen" if self.notifier.cross_process else "poll",
            "node": {"id": self.id, "kind": self.kind},
        }


def build_node(core: Core, subscribers: dict[str, list[Subscriber]] | None = None) -> NodeProcess:
    """The node of the process that shares ``core``; ``subscribers``: what the API (when this
    process serves it) listens for besides the node's own."""
    settings, db, node = core.settings, core.db, core.node
    lease = settings.lease_seconds
    work = Work(db, core.events, lease_seconds=lease, max_attempts=settings.max_attempts)
    recovery = Recovery(
        db, core.events, core.files, lease_seconds=lease, max_attempts=settings.max_attempts
    )
    retention = Retention(db, core.files, settings.retention_days)
    runner = Runner(
        work,
        core.backends,
        core.files,
        core.catalog,
        owner=node.id,
        workers=settings.workers,
        models=settings.worker_models or None,
        upstream_models=upstream_models(core.catalog),
        upstream_workers=settings.upstream_concurrency if settings.workers else 0,
        poll_seconds=settings.poll_seconds,
        signalled=core.cross_process.is_set,
    )
    sender = WebhookSender(
        db, webhook_policy(settings), node.id, box=core.box, hooks=[core.metrics.webhook_attempt]
    )
    tasks = [runner.renew, recovery.sweep, retention.tick, core.uploads.tick]
    heartbeat = Heartbeat(db, node, lease, tasks=tasks)
    listeners: dict[str, list[Subscriber]] = {
        JOBS: [runner.job_ready],
        CHANGES: [runner.changed],
        WEBHOOKS: [lambda _payload: sender.wake()],
    }
    for channel, extra in (subscribers or {}).items():
        listeners[channel] = [*listeners.get(channel, []), *extra]
    notifier = Notifier(db, listeners, listening=core.cross_process)
    return NodeProcess(
        core=core,
        work=work,
        recovery=recovery,
        retention=retention,
        runner=runner,
        sender=sender,
        heartbeat=heartbeat,
        notifier=notifier,
    )


def build(settings: Settings, backends: Backends | None = None) -> tuple[Services, NodeProcess]:
    """What ``darkroom serve`` runs: the API's services, and the node beside them."""
    services = build_services(build_core(settings, backends))
    return services, build_node(services.core, services.subscribers())


def webhook_policy(settings: Settings) -> Policy:
    return Policy(
        timeout=settings.webhook_timeout_seconds,
        retry=settings.webhook_retry_seconds,
        retry_max=settings.webhook_retry_max_seconds,
        max_age=settings.webhook_max_age_seconds,
        concurrency=settings.webhook_concurrency,
        endpoint_concurrency=settings.webhook_endpoint_concurrency,
        account_share=settings.webhook_account_share,
        poll=settings.poll_seconds,
        allow_private=settings.allow_private_webhooks,
    )


def threads_for(settings: Settings) -> int:
    """Threads for the blocking calls of this process (``asyncio.to_thread``): one for each
    render, vendor call and webhook send that may be in flight, and 32 for the API. asyncio's
    default (CPUs + 4) would let background work that waits out a database outage (each call
    retries for up to database_retry_seconds) hold every thread, and queue the API's calls
    behind it."""
    in_flight = settings.workers + settings.upstream_concurrency + settings.webhook_concurrency
    return 32 + in_flight
