"""The parts of a running darkroom, built once from ``Settings``, each given what it needs when
it is made (its subscribers and hooks included).

:class:`Core` is what every process shares: the database, the catalog, the storage, the status
changes of projects and what records and observes them. :class:`Services` is what the HTTP
routes use, on top of it. The node's own parts (the render workers, the webhook sender, the
heartbeat and the notifier) are :mod:`darkroom.node`'s: importing the API imports no worker.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

from darkroom.core.accounts import Authenticator
from darkroom.core.admin import Admin, load_admin_token
from darkroom.core.catalog import PROVIDERS, Catalog
from darkroom.core.creation import Creation
from darkroom.core.downloads import Downloads
from darkroom.core.events import JobEvents
from darkroom.core.ids import new_id
from darkroom.core.jobs import Jobs, QueueLimits
from darkroom.core.project_view import project_body
from darkroom.core.ratelimit import RateLimiter
from darkroom.core.sources import SourceLimits
from darkroom.core.uploads import UPLOAD_PATH, Uploads
from darkroom.core.watch import Watch
from darkroom.core.webhook_secrets import SecretBox, check_at_start
from darkroom.core.webhooks import Webhooks
from darkroom.engine.base import Backend
from darkroom.engine.diffusers_backend import DiffusersBackend
from darkroom.engine.preview import PreviewBackend
from darkroom.engine.providers import provider_backends
from darkroom.engine.registry import Backends
from darkroom.observe.logs import log_transition
from darkroom.observe.metrics import Metrics
from darkroom.queue.heartbeat import Node
from darkroom.queue.notify import AUTH, CHANGES, Subscriber
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

log = logging.getLogger("darkroom.data")
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


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


def build_webhooks(settings: Settings, db: Database, links: Downloads, box: SecretBox) -> Webhooks:
    """Webhook endpoints and deliveries (the node's sender posts them); ``box`` seals and opens
    their signing secrets."""
    ttl = settings.download_ttl_seconds
    return Webhooks(
        db,
        lambda project: project_body(project, links, ttl),
        allow_private=settings.allow_private_webhooks,
        box=box,
        max_age=settings.webhook_max_age_seconds,
    )


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


@dataclass(frozen=True)
class Core:
    """What every darkroom process shares, API or worker."""

    settings: Settings
    node: Node  # this process as the cluster sees it
    db: Database
    catalog: Catalog
    backends: Backends
    files: ProjectFiles
    box: SecretBox  # seals and opens the webhooks' signing secrets
    signer: URLSigner
    downloads: Downloads
    webhooks: Webhooks
    metrics: Metrics
    events: JobEvents
    uploads: Uploads  # files uploaded for the image editor (POST /v1/files/upload-urls)
    # Set while other processes' signals reach this one (the notifier's listening connection
    # is up); waiters and idle workers poll while it is not.
    cross_process: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        self.backends.close()
        self.db.dispose()


def build_core(
    settings: Settings, backends: Backends | None = None, *, serves_api: bool = True
) -> Core:
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
    box = secret_box(settings)
    check_at_start(db, box, seal_now=settings.is_sqlite)  # what an older version stored in clear
    node = Node(
        id=new_id("node"),
        kind=node_kind(settings, serves_api=serves_api),
        models=settings.worker_models or None,
        concurrency=settings.workers,
    )
    secret = server_secret(settings)
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
    webhooks = build_webhooks(settings, db, downloads, box)
    metrics = Metrics(db, catalog.models)
    events = JobEvents(db, recorders=[webhooks.record], observers=[metrics.observe, log_transition])
    return Core(
        settings=settings,
        node=node,
        db=db,
        catalog=catalog,
        backends=backends,
        files=files,
        box=box,
        signer=signer,
        downloads=downloads,
        webhooks=webhooks,
        metrics=metrics,
        events=events,
        uploads=uploads,
    )


@dataclass(frozen=True)
class Services:
    """What the HTTP routes use: the shared parts, and the caller's side of the core."""

    settings: Settings
    db: Database
    catalog: Catalog
    files: ProjectFiles
    signer: URLSigner
    downloads: Downloads
    events: JobEvents
    webhooks: Webhooks
    metrics: Metrics
    jobs: Jobs
    watch: Watch
    creation: Creation
    auth: Authenticator
    limiter: RateLimiter
    admin: Admin
    uploads: Uploads
    core: Core

    def subscribers(self) -> dict[str, list[Subscriber]]:
        """What the API listens for (the notifier is the node's): a project's change wakes its
        waiters, an account's change drops the keys it cached."""
        return {CHANGES: [self.watch.changed], AUTH: [lambda _account_id: self.auth.forget()]}

    def close(self) -> None:
        """Let the creates in hand commit, then close what the core holds."""
        self.creation.close()
        self.core.close()


def build_services(core: Core) -> Services:
    settings, db = core.settings, core.db
    jobs = Jobs(
        db,
        core.catalog,
        core.events,
        core.files,
        node_id=core.node.id,
        limits=QueueLimits(settings.queue_max_per_account, settings.queue_max_total),
        lease_seconds=settings.lease_seconds,
    )
    watch = Watch(jobs, settings.poll_seconds, signalled=core.cross_process.is_set)
    limiter = RateLimiter(db, settings.rate_limit_per_minute)
    auth = Authenticator(db, settings.auth_cache_seconds)
    sources = SourceLimits(
        max_bytes=settings.source_max_bytes,
        max_pixels=settings.source_max_pixels,
        fetch_timeout=settings.fetch_timeout_seconds,
        fetch_allow_private=settings.fetch_allow_private,
    )
    admin_token = load_admin_token(settings.admin_token, settings.generated_admin_token_file)
    return Services(
        settings=settings,
        db=db,
        catalog=core.catalog,
        files=core.files,
        signer=core.signer,
        downloads=core.downloads,
        events=core.events,
        webhooks=core.webhooks,
        metrics=core.metrics,
        jobs=jobs,
        watch=watch,
        creation=Creation(
            jobs,
            watch,
            limiter,
            sources,
            core.uploads,
            sync_timeout=settings.sync_timeout_seconds,
        ),
        auth=auth,
        limiter=limiter,
        admin=Admin(db, core.catalog, auth, admin_token),
        uploads=core.uploads,
        core=core,
    )
