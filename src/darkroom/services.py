"""The parts of a running darkroom, built once from ``Settings`` and shared by the HTTP dialects,
the workers and the operator commands."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from darkroom.core.accounts import Authenticator
from darkroom.core.admin import Admin, load_admin_token
from darkroom.core.catalog import PROVIDERS, Catalog
from darkroom.core.downloads import Downloads
from darkroom.core.events import JobEvents
from darkroom.core.ids import new_id
from darkroom.core.intake import Intake
from darkroom.core.jobs import Jobs, QueueLimits
from darkroom.core.project_view import project_body
from darkroom.core.ratelimit import RateLimiter
from darkroom.core.recovery import Recovery
from darkroom.core.retention import Retention
from darkroom.core.uploads import UPLOAD_PATH, Uploads
from darkroom.core.watch import Watch
from darkroom.core.webhook_secrets import SecretBox, check_at_start
from darkroom.core.webhooks import Webhooks
from darkroom.core.work import Work
from darkroom.engine.base import Backend
from darkroom.engine.diffusers_backend import DiffusersBackend
from darkroom.engine.preview import PreviewBackend
from darkroom.engine.providers import provider_backends
from darkroom.engine.registry import Backends
from darkroom.observe.logs import log_transition
from darkroom.observe.metrics import Metrics
from darkroom.queue.heartbeat import Heartbeat, Node
from darkroom.queue.notify import AUTH, CHANGES, WEBHOOKS, Notifier
from darkroom.settings import Settings
from darkroom.startup import wait_for_database
from darkroom.storage.files import ProjectFiles
from darkroom.storage.local import LocalStore
from darkroom.storage.location import open_store
from darkroom.storage.objects import ObjectStore
from darkroom.storage.permissions import make_dirs, own_file, tighten
from darkroom.storage.signing import URLSigner, load_or_create_secret
from darkroom.storage.uploads import UploadFiles
from darkroom.store.database import Database
from darkroom.worker.runner import Runner
from darkroom.worker.webhook_sender import Policy, WebhookSender

log = logging.getLogger("darkroom.data")
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


@dataclass
class Services:
    settings: Settings
    db: Database
    catalog: Catalog
    files: ProjectFiles
    signer: URLSigner
    downloads: Downloads
    retention: Retention
    node: Node
    notifier: Notifier
    heartbeat: Heartbeat
    events: JobEvents
    jobs: Jobs
    work: Work
    recovery: Recovery
    intake: Intake
    auth: Authenticator
    runner: Runner
    limiter: RateLimiter
    watch: Watch
    webhooks: Webhooks
    sender: WebhookSender
    admin: Admin
    metrics: Metrics
    uploads: Uploads


def open_database(settings: Settings) -> Database:
    """The database, migrated to the newest schema; the data directory (and a SQLite file
    anywhere) readable by the owner only."""
    make_dirs(settings.data_dir)
    make_private(settings.data_dir)
    sqlite_file = _sqlite_file(settings.sqlalchemy_url)
    if sqlite_file is not None:
        # Created owner-only before SQLite opens it: its -wal and -shm files get its mode.
        own_file(sqlite_file)
        for suffix in SQLITE_COMPANIONS:
            companion = sqlite_file.with_name(sqlite_file.name + suffix)
            if companion.exists():
                own_file(companion)
    db = Database(
        settings.sqlalchemy_url,
        sqlite_synchronous=settings.sqlite_synchronous,
        retry_seconds=settings.database_retry_seconds,
    )
    wait_for_database(db, settings.database_start_seconds)  # started before its database
    db.migrate()
    return db


def make_private(root: Path) -> None:
    """Take the group and other bits off ``root`` and everything in it (left by an older
    version), saying so in the log."""
    changed = tighten(root)
    if changed:
        log.warning(
            "%s: made %d files and directories readable by the owner only (they were readable "
            "by other users)",
            root.resolve(),
            changed,
        )


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def load_catalog(settings: Settings) -> Catalog:
    """The catalog as this server runs it: every model on the preview backend when
    ``preview_only``; otherwise with the ``weights`` overrides, and no edits on the diffusers
    backend (it generates only)."""
    catalog = Catalog.load(settings.catalog)
    models = dict(catalog.models)
    for name, source in settings.weights.items():
        entry = models.get(name)
        if entry is None or entry.weights is None:
            raise ValueError(f"--weights {name}=...: the catalog has no weights table for {name!r}")
        weights = entry.weights.model_copy(update={"source": source})
        models[name] = entry.model_copy(update={"weights": weights})
    for name, entry in models.items():
        if settings.preview_only:
            models[name] = entry.model_copy(update={"backend": "preview"})
        elif entry.backend == "diffusers":
            models[name] = entry.model_copy(update={"edits": False})
    return catalog.model_copy(update={"models": models})


def default_backends(
    catalog: Catalog, settings: Settings, environ: Mapping[str, str] | None = None
) -> Backends:
    """The preview backend, the diffusers backend for the models the catalog puts on it, and a
    provider backend per vendor that models use (their keys read from ``environ``)."""
    upstreams = {
        name: (entry.backend, entry.upstream)
        for name, entry in catalog.models.items()
        if entry.backend in PROVIDERS and entry.upstream is not None
    }
    providers = provider_backends(upstreams, os.environ if environ is None else environ)
    served = {
        name: entry.weights
        for name, entry in catalog.models.items()
        if entry.backend == "diffusers" and entry.weights is not None
    }
    backends: list[Backend] = [PreviewBackend(), *providers]
    if served:
        warmup = {
            name: sorted(
                {catalog.sizes[ratio][res] for ratio in catalog.sizes for res in model.resolutions}
            )
            for name, model in catalog.models.items()
            if name in served
        }
        backends.append(
            DiffusersBackend(
                served,
                device=settings.device,
                dtype=settings.dtype,
                optimize=settings.optimize,
                warmup_sizes=warmup,
            )
        )
    return Backends(backends)


def build_webhooks(
    settings: Settings, db: Database, links: Downloads, owner: str, box: SecretBox
) -> tuple[Webhooks, WebhookSender]:
    """Webhook endpoints and deliveries, and the sender that posts them (holding its leases in
    the name of ``owner``, this node); ``box`` seals and opens their signing secrets."""
    ttl = settings.download_ttl_seconds
    allow_private = settings.allow_private_webhooks
    webhooks = Webhooks(
        db,
        lambda project: project_body(project, links, ttl),
        allow_private=allow_private,
        box=box,
        max_age=settings.webhook_max_age_seconds,
    )
    policy = Policy(
        timeout=settings.webhook_timeout_seconds,
        retry=settings.webhook_retry_seconds,
        retry_max=settings.webhook_retry_max_seconds,
        max_age=settings.webhook_max_age_seconds,
        concurrency=settings.webhook_concurrency,
        endpoint_concurrency=settings.webhook_endpoint_concurrency,
        account_share=settings.webhook_account_share,
        poll=settings.poll_seconds,
        allow_private=allow_private,
    )
    sender = WebhookSender(db, policy, owner, box=box)
    return webhooks, sender


def server_secret(settings: Settings) -> bytes:
    """The server's secret: ``secret_key``, else the one generated once in the data directory."""
    return load_or_create_secret(settings.secret_key, settings.generated_secret_key_file)


def secret_box(settings: Settings) -> SecretBox:
    """What seals webhook secrets under the server's secret and opens them with it or a
    previous one."""
    return SecretBox([server_secret(settings), *settings.previous_secrets])


def make_store_private(store: ObjectStore, data_dir: Path) -> None:
    """A local storage directory outside the data directory, readable by the owner only."""
    if isinstance(store, LocalStore) and not store.root.is_relative_to(data_dir.resolve()):
        make_private(store.root)


def with_availability(catalog: Catalog, backends: Backends) -> Catalog:
    """The catalog with each model this server cannot render marked ``unavailable`` (and why):
    its backend is not running here, or says it cannot serve it (a vendor key not set)."""
    models = dict(catalog.models)
    for name, entry in models.items():
        backend = backends.find(entry.backend)
        if backend is None:
            reason: str | None = f"no {entry.backend} backend runs here"
        else:
            check = getattr(backend, "unavailable", None)
            reason = check(name) if callable(check) else None
        if reason is not None:
            models[name] = entry.model_copy(update={"unavailable": reason})
    return catalog.model_copy(update={"models": models})


def upstream_models(catalog: Catalog) -> frozenset[str]:
    """The models rendered through a vendor's API."""
    return frozenset(name for name, m in catalog.models.items() if m.backend in PROVIDERS)


def node_kind(settings: Settings, *, serves_api: bool) -> str:
    if not serves_api:
        return "worker"
    return "embedded" if settings.workers else "api"


def build_services(
    settings: Settings, backends: Backends | None = None, *, serves_api: bool = True
) -> Services:
    # Before the database: a misconfigured node fails at once, with one line.
    settings.require_shared_secrets()
    settings.require_shared_storage()
    store = open_store(settings.storage_url, settings.data_dir, links=settings.storage_links)
    files = ProjectFiles(store)
    db = open_database(settings)
    make_store_private(store, settings.data_dir)
    catalog = load_catalog(settings)
    backends = backends or default_backends(catalog, settings)
    catalog = with_availability(catalog, backends)
    secret = server_secret(settings)
    box = secret_box(settings)
    check_at_start(db, box, seal_now=settings.is_sqlite)  # what an older version stored in clear
    node = Node(
        id=new_id("node"),
        kind=node_kind(settings, serves_api=serves_api),
        models=settings.worker_models or None,
        concurrency=settings.workers,
    )
    notifier = Notifier(db)
    events = JobEvents(db)
    lease = settings.lease_seconds
    jobs = Jobs(
        db,
        catalog,
        events,
        files,
        node_id=node.id,
        limits=QueueLimits(settings.queue_max_per_account, settings.queue_max_total),
        lease_seconds=lease,
    )
    work = Work(db, events, lease_seconds=lease, max_attempts=settings.max_attempts)
    recovery = Recovery(db, events, files, lease_seconds=lease, max_attempts=settings.max_attempts)
    runner = Runner(
        work,
        backends,
        files,
        catalog,
        notifier,
        owner=node.id,
        workers=settings.workers,
        models=settings.worker_models or None,
        upstream_models=upstream_models(catalog),
        upstream_workers=settings.upstream_concurrency if settings.workers else 0,
        poll_seconds=settings.poll_seconds,
    )
    heartbeat = Heartbeat(db, node, lease)
    retention = Retention(db, files, settings.retention_days)
    heartbeat.tasks += [runner.renew, recovery.sweep, retention.tick]
    auth = Authenticator(db, settings.auth_cache_seconds)
    notifier.subscribe(AUTH, lambda _account_id: auth.forget())
    signer = URLSigner(secret, settings.base_url, settings.previous_secrets)
    downloads = Downloads(db, files, signer)
    uploads = Uploads(
        db,
        UploadFiles(store),
        URLSigner(secret, settings.base_url, settings.previous_secrets, path=UPLOAD_PATH),
        ttl_seconds=settings.upload_ttl_seconds,
        max_bytes=settings.upload_max_bytes,
        max_pixels=settings.source_max_pixels,
    )
    heartbeat.tasks.append(uploads.tick)
    webhooks, sender = build_webhooks(settings, db, downloads, node.id, box)
    events.recorders.append(webhooks.record)
    notifier.subscribe(WEBHOOKS, lambda _payload: sender.wake())
    metrics = Metrics(db, catalog.models)
    events.observers += [metrics.observe, log_transition]
    sender.hooks.append(metrics.webhook_attempt)
    watch = Watch(jobs, settings.poll_seconds, signalled=lambda: notifier.cross_process)
    notifier.subscribe(CHANGES, watch.changed)
    return Services(
        settings=settings,
        db=db,
        catalog=catalog,
        files=files,
        signer=signer,
        downloads=downloads,
        retention=retention,
        node=node,
        notifier=notifier,
        heartbeat=heartbeat,
        events=events,
        jobs=jobs,
        work=work,
        recovery=recovery,
        intake=Intake(jobs),
        auth=auth,
        runner=runner,
        limiter=RateLimiter(db, settings.rate_limit_per_minute),
        watch=watch,
        webhooks=webhooks,
        sender=sender,
        admin=Admin(
            db,
            catalog,
            auth,
            load_admin_token(settings.admin_token, settings.generated_admin_token_file),
        ),
        metrics=metrics,
        uploads=uploads,
    )


async def start_node(services: Services) -> None:
    """Start what runs beside the API (or without it, in a worker): the notification listener,
    the heartbeat (which also takes over what dead nodes left), the render workers and, in a
    process that renders, the webhook sender."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(threads_for(services.settings), "darkroom"))
    services.watch.bind(loop)
    await asyncio.to_thread(services.notifier.start)
    await asyncio.to_thread(services.heartbeat.start)
    await services.runner.start()
    if services.settings.workers:  # the process that renders also sends the webhooks
        await services.sender.start()


def threads_for(settings: Settings) -> int:
    """Threads for the blocking calls of this process (``asyncio.to_thread``): one for each
    render, vendor call and webhook send that may be in flight, and 32 for the API. asyncio's
    default (CPUs + 4) would let background work that waits out a database outage (each call
    retries for up to database_retry_seconds) hold every thread, and queue the API's calls
    behind it."""
    in_flight = settings.workers + settings.upstream_concurrency + settings.webhook_concurrency
    return 32 + in_flight


async def stop_node(services: Services) -> None:
    """Stop in the reverse order: jobs in hand finish within the grace period or are handed back
    at once; the node is marked stopped so that nobody waits for its leases."""
    await services.sender.stop()
    await services.runner.stop(services.settings.shutdown_grace_seconds)
    await asyncio.to_thread(services.heartbeat.stop)
    services.notifier.stop()
    services.runner.backends.close()
    services.intake.close()
    services.db.dispose()
