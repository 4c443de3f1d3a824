"""The runner: workers that claim jobs under a lease and carry each through render (off the event
loop) → store files → complete, or fail with a refund.

Idle workers sleep until a job for one of their models is signalled (in this process, or from
another one through PostgreSQL's NOTIFY), and look in the database every ``poll_seconds`` only
while no signal can reach them. The heartbeat renews the leases of the jobs in hand; a job whose
lease was lost (or that was canceled) stops at the next step of its render, and its images are
discarded only when nobody else renders it.

On stop, no new job is claimed; the jobs in hand may finish within the grace period, and the
others are handed back to the queue at once for another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from darkroom.core.catalog import Catalog
from darkroom.core.loops import call_soon_in
from darkroom.core.projects import Project, StoredImage
from darkroom.core.request_ids import request_context
from darkroom.core.work import Work
from darkroom.engine.base import BackendError, RenderCanceled, RenderRequest
from darkroom.engine.encode import encode
from darkroom.engine.registry import Backends
from darkroom.storage.files import ProjectFiles, new_attempt, quietly
from darkroom.storage.objects import ObjectMissing, StorageError, StorageFull, StorageRefused
from darkroom.store.database import is_transient, utcnow

log = logging.getLogger("darkroom.runner")

# While signals reach this process, idle workers still look this often (a missed signal costs at
# most this long).
SIGNALLED_POLL_SECONDS = 30.0


class _Job:
    """A job in hand: whether this worker still holds it, and whether it should stop."""

    def __init__(self, project: Project, leased_at: float) -> None:
        self.project = project
        # time.monotonic() at the start of the last claim or renewal that succeeded: the lease
        # runs at least until this plus its length.
        self.leased_at = leased_at
        self.attempt = new_attempt()  # names the objects this attempt stores
        self.keys: list[str] = []  # the objects this attempt stored
        self.usage: dict[str, int] | None = None  # what the vendor counted, for an upstream
        self.changed = threading.Event()  # the project changed: re-read before the next step
        self.lost = False  # the lease was not renewed: another worker may render it now
        self.lapsed = False  # lost because its end passed with no renewal (no database)
        self.handing_back = False  # the runner is stopping: give it back to the queue


class Runner:
    def __init__(
        self,
        work: Work,
        backends: Backends,
        files: ProjectFiles,
        catalog: Catalog,
        *,
        owner: str,
        workers: int,
        models: list[str] | None = None,
        upstream_models: frozenset[str] = frozenset(),
        upstream_workers: int = 0,
        poll_seconds: float = 1.0,
        cancel_check_seconds: float = 1.0,
        signalled: Callable[[], bool] = lambda: False,
    ) -> None:
        """The notifier tells :meth:`job_ready` and :meth:`changed` of its signals;
        ``signalled()`` says whether other processes' signals reach this one (else idle
        workers look in the database every ``poll_seconds``)."""
        self.work = work
        self.backends = backends
        self.files = files
        self.catalog = catalog
        self.signalled = signalled
        self.owner = owner  # this node's id: the name on its leases
        self.workers = workers
        self.models = models or None
        # Models rendered through a vendor's API wait on the network, not on this machine: they
        # get workers of their own (``upstream_workers``), so that many calls can be in flight
        # while the local workers keep the GPU busy.
        self.upstream_models = upstream_models
        self.upstream_workers = upstream_workers
        self.poll_seconds = poll_seconds
        # How often a render asks the database whether its project was canceled elsewhere when
        # no signal says so.
        self.cancel_check_seconds = cancel_check_seconds
        self._tasks: list[asyncio.Task[None]] = []
        self._executor: ThreadPoolExecutor | None = None
        self._checks: ThreadPoolExecutor | None = None  # the renders' reads of their project
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: set[asyncio.Event] = set()
        self._signals = 0  # job signals seen (on the loop): one during a claim is not lost
        self._jobs: dict[str, _Job] = {}  # in hand, by project id (read by the heartbeat)
        self._lock = threading.Lock()
        self._stopping = False

    @property
    def running(self) -> bool:
        """Whether the workers are up (an API-only node, with none, always is)."""
        return self.workers == 0 or any(not t.done() for t in self._tasks)

    async def start(self) -> None:
        if self.workers == 0:
            return  # an API-only node: worker processes render what it queues
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        lanes = self._lanes()
        # Renders run on threads of their own: a stop does not wait for one that hangs.
        threads = max(1, sum(count for count, _ in lanes))
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="darkroom-render")
        self._checks = ThreadPoolExecutor(threads, thread_name_prefix="darkroom-render-check")
        self._tasks = [
            asyncio.create_task(self._work(models), name=f"darkroom-worker-{lane}-{i}")
            for lane, (count, models) in enumerate(lanes)
            for i in range(count)
        ]

    def _lanes(self) -> list[tuple[int, list[str] | None]]:
        """(workers, the models they take: None for any) of each lane."""
        if not self.upstream_models:
            return [(self.workers, self.models)]
        wanted = self.models or list(self.catalog.models)
        local = [m for m in wanted if m not in self.upstream_models]
        upstream = [m for m in wanted if m in self.upstream_models]
        lanes = [(self.workers, local), (self.upstream_workers, upstream)]
        return [(count, models) for count, models in lanes if count and models]

    async def stop(self, grace: float = 10.0) -> None:
        """Claim nothing more; let the jobs in hand finish within ``grace`` seconds, hand the
        others back to the queue at once, then stop."""
        self._stopping = True
        for event in list(self._idle):
            event.set()
        deadline = time.monotonic() + grace
        while self._jobs and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        with self._lock:
            remaining = list(self._jobs.values())
        for job in remaining:
            job.handing_back = True
            job.changed.set()
            try:
                status = await asyncio.to_thread(self.work.hand_back, self.owner, job.project.id)
            except Exception:
                log.exception("could not hand back %s; its lease will pass", job.project.id)
                continue
            if status is not None:
                log.info("project %s handed back (%s)", job.project.id, status)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        with self._lock:
            self._jobs.clear()
        for executor in (self._executor, self._checks):
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)

    # -- signals (from any thread) --------------------------------------------------------------

    def job_ready(self, model: str) -> None:
        """A job for ``model`` became claimable (the notifier's ``JOBS`` signal)."""
        if self._loop is not None and (self.models is None or model in self.models):
            call_soon_in(self._loop, self._wake_all)

    def _wake_all(self) -> None:
        """Every idle worker tries to claim: one signal may stand for a batch of jobs, and a
        worker that finds none goes back to sleep."""
        self._signals += 1
        for event in self._idle:
            event.set()

    def changed(self, project_id: str) -> None:
        """A project changed (``CHANGES``): the job in hand re-reads it before its next step."""
        job = self._jobs.get(project_id)
        if job is not None:
            job.changed.set()

    def renew(self) -> None:
        """Heartbeat task: extend the leases of the jobs in hand; a job whose lease could not be
        renewed is lost, and its render stops at the next step."""
        with self._lock:
            jobs = dict(self._jobs)
        if not jobs:
            return
        renewed = self.work.renew(self.owner, list(jobs))
        for project_id, job in jobs.items():
            if project_id in renewed.ids:
                job.leased_at = max(job.leased_at, renewed.at)
            else:
                job.lost = True
                job.changed.set()

    # -- the workers -----------------------------------------------------------------------------

    async def _work(self, models: list[str] | None) -> None:
        wake = asyncio.Event()
        backoff = 0.05
        while not self._stopping:
            wake.clear()
            signals = self._signals
            try:
                claimed = await asyncio.to_thread(self.work.claim, self.owner, models)
                backoff = 0.05
            except Exception as exc:  # the database is down: no worker dies of it
                log.warning(
                    "claiming a job failed (%s); trying again in %.1f s",
                    type(exc).__name__,
                    backoff,
                    exc_info=not is_transient(exc),
                )
                await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, 5.0)
                continue
            if claimed is None:
                if signals == self._signals:  # else a job came while this one looked
                    await self._idle_until(wake)
                continue
            project, leased_at = claimed
            job = _Job(project, leased_at)
            with self._lock:
                self._jobs[project.id] = job
            try:
                with request_context(project.request_id):
                    await self._run(job)
            except Exception:  # never let one job kill a worker
                log.exception("job %s crashed the worker loop", project.id)
            finally:
                with self._lock:
                    self._jobs.pop(project.id, None)
            # Between jobs, yield to others: a loop with a deep queue still serves requests.
            await asyncio.sleep(0)

    async def _idle_until(self, wake: asyncio.Event) -> None:
        # Other processes' signals reach this one only through PostgreSQL's LISTEN.
        period = SIGNALLED_POLL_SECONDS if self.signalled() else self.poll_seconds
        self._idle.add(wake)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period):
                    await wake.wait()
        finally:
            self._idle.discard(wake)

    async def _run(self, job: _Job) -> None:
        project = job.project
        log.info("rendering %s on %s", project.id, project.backend)
        started = time.perf_counter()
        try:
            loop = asyncio.get_running_loop()
            context = contextvars.copy_context()  # the request id, for the render's log lines
            stored = await loop.run_in_executor(
                self._executor, context.run, self._render_and_store, job
            )
        except RenderCanceled:
            await self._stopped(job)
            return
        except BackendError as exc:
            log.warning("project %s failed: %s (%s)", project.id, exc.message, exc.code)
            await self._give_up(job, exc.code, exc.message)
            return
        except Exception as exc:
            log.exception("project %s: backend crashed", project.id)
            await self._give_up(job, "backend_error", f"rendering failed ({type(exc).__name__})")
            return
        render_ms = round((time.perf_counter() - started) * 1000)
        rendered_at = utcnow()
        completed = await self._persist(
            job,
            lambda: self.work.complete(
                self.owner,
                project.id,
                rendered_at=rendered_at,
                render_ms=render_ms,
                stored=stored,
                upstream_usage=job.usage,
            ),
        )
        if not completed:
            await self._stopped(job)
            return
        log.info("project %s complete in %d ms", project.id, render_ms)
        await asyncio.to_thread(quietly, lambda: self._tidy_after(project, job.keys))

    async def _persist(self, job: _Job, end: Callable[[], bool]) -> bool:
        """Record the end of a job (``end`` returns whether this worker still held it), however
        long the database stays unreachable: each try waits it out for
        ``database_retry_seconds``, and the images stay stored meanwhile. The lease may pass
        during a long outage; once the database is back, the heartbeat renews it first, or
        another worker has taken the job and the end is refused (rendering is at-least-once,
        the charge is settled once)."""
        while True:
            try:
                return await asyncio.to_thread(end)
            except Exception as exc:
                if not is_transient(exc) or self._stopping:
                    raise
                log.warning(
                    "project %s: the database is still unreachable (%s); its end is kept "
                    "and written once it is back",
                    job.project.id,
                    type(exc).__name__,
                )

    def _tidy_after(self, project: Project, keys: list[str]) -> None:
        """Once complete: the sources of an edit, and what cut-off attempts had stored, go."""
        self.files.delete_sources(project.id, project.source_count)
        self.files.keep_only(project.id, keys)

    async def _stopped(self, job: _Job) -> None:
        """The render stopped, or its end was refused: hand it back (stopping), leave it to the
        worker that holds it now (lease lost), or let it go (canceled); in each case the images
        this attempt stored are removed."""
        project = job.project
        if job.handing_back:
            log.info("project %s: rendering stopped to hand it back", project.id)
        elif job.lapsed:
            log.warning(
                "project %s: lease lost: not renewed within its %g s (the database did not "
                "answer); rendering stopped, the job is left to whichever worker takes it",
                project.id,
                self.work.lease_seconds,
            )
        elif job.lost:
            log.warning("project %s: lease lost; left to the worker that holds it", project.id)
        else:
            log.info("project %s canceled: rendering stopped", project.id)
        await asyncio.to_thread(quietly, lambda: self.files.discard(job.keys))

    async def _give_up(self, job: _Job, code: str, message: str) -> None:
        project = job.project
        if await self._persist(job, lambda: self.work.fail(self.owner, project.id, code, message)):
            await asyncio.to_thread(quietly, lambda: self.files.delete_project(project))
        else:
            await asyncio.to_thread(quietly, lambda: self.files.discard(job.keys))

    # -- on the render thread --------------------------------------------------------------------

    def _render_and_store(self, job: _Job) -> list[StoredImage]:
        project = job.project
        backend = self.backends.get(project.backend)
        if project.source_count and not backend.edits:
            raise BackendError(
                "edits_unsupported", f"the {backend.name} backend cannot edit images"
            )
        stop = self._stop_check(job)

        def usage(counted: dict[str, int]) -> None:
            job.usage = counted

        images = backend.render(self.request_for(project, stop, usage))
        if len(images) != project.image_count:
            raise BackendError(
                "backend_error",
                f"backend returned {len(images)} images instead of {project.image_count}",
            )
        encoded = [encode(data, project.output_format, project.output_quality) for data in images]
        if stop():  # the job is not ours any more: store nothing
            raise RenderCanceled()
        try:
            job.keys = self.files.save_outputs(
                project.id, job.attempt, encoded, project.output_format
            )
        except StorageFull as exc:
            raise BackendError(
                "storage_error", f"storage full: the images could not be stored ({exc.message})"
            ) from None
        except StorageRefused as exc:
            raise BackendError(
                "storage_error",
                f"storage refused the write: the images could not be stored ({exc.message})",
            ) from None
        except StorageError as exc:
            raise BackendError(
                "storage_error", f"the images could not be stored ({exc.message})"
            ) from None
        return [
            StoredImage(hashlib.sha256(data).hexdigest(), len(data), key)
            for data, key in zip(encoded, job.keys, strict=True)
        ]

    def request_for(
        self,
        project: Project,
        canceled: Callable[[], bool] | None = None,
        usage: Callable[[dict[str, int]], None] | None = None,
    ) -> RenderRequest:
        try:
            sources, mask = self.files.load_sources(project)
        except ObjectMissing:
            raise BackendError(
                "source_missing", "the source images of this edit are no longer stored"
            ) from None
        except StorageError as exc:
            raise BackendError(
                "storage_error", f"the source images could not be read ({exc.message})"
            ) from None
        return RenderRequest(
            project_id=project.id,
            model=project.model,
            prompt=project.final_prompt,
            user_prompt=project.prompt,
            style=self.catalog.style_hint(project.tool),
            width=project.width,
            height=project.height,
            count=project.image_count,
            seed=project.seed,
            sources=sources,
            mask=mask,
            options=project.vendor_options,
            report=lambda text: self.work.set_status_reason(self.owner, project.id, text),
            canceled=canceled,
            usage=usage,
        )

    def _stop_check(self, job: _Job) -> Callable[[], bool]:
        """Whether the render should stop (asked at every step): the project was canceled, the
        lease was lost (or its end passed with no renewal), or the runner is handing it back.
        It never waits for the database: when a signal said the project changed, and at least
        every ``cancel_check_seconds``, it starts a read of the project beside the render, and
        heeds the answer at the step after it arrives."""
        lease = self.work.lease_seconds
        next_read = time.monotonic() + self.cancel_check_seconds
        reading: Future[bool] | None = None
        stopped = False

        def check() -> bool:
            nonlocal next_read, reading, stopped
            if job.lost or job.handing_back:
                return True
            now = time.monotonic()
            if now >= job.leased_at + lease:  # whatever the database says, or does not
                job.lost = job.lapsed = True
                return True
            if reading is not None and reading.done():
                try:
                    stopped = not reading.result()
                except Exception as exc:  # the database did not answer: the lease decides
                    log.debug("project %s: reading it failed (%s)", job.project.id, exc)
                reading = None
            if (
                not stopped
                and reading is None
                and self._checks is not None
                and (job.changed.is_set() or now >= next_read)
            ):
                job.changed.clear()
                next_read = now + self.cancel_check_seconds
                reading = self._checks.submit(self.work.holds, self.owner, job.project.id)
            return stopped

        return check
