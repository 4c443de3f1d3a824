"""The runner: workers that take project ids off the queue and carry each job through
claim → render (off the event loop) → store files → complete, or fail with a refund."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from darkroom.core.catalog import Catalog
from darkroom.core.jobs import Jobs, Project, StoredImage
from darkroom.core.status import Status
from darkroom.engine.base import BackendError, RenderCanceled, RenderRequest
from darkroom.engine.encode import encode
from darkroom.engine.registry import Backends
from darkroom.observe.context import request_context
from darkroom.storage.files import LocalFiles
from darkroom.store.database import utcnow
from darkroom.worker.queue import InProcessQueue

log = logging.getLogger("darkroom.runner")


class Runner:
    def __init__(
        self,
        jobs: Jobs,
        queue: InProcessQueue,
        backends: Backends,
        files: LocalFiles,
        catalog: Catalog,
        *,
        workers: int,
        poll_seconds: float = 1.0,
        cancel_check_seconds: float = 1.0,
    ) -> None:
        self.jobs = jobs
        self.queue = queue
        self.backends = backends
        self.files = files
        self.catalog = catalog
        self.workers = workers
        self.poll_seconds = poll_seconds
        self._tasks: list[asyncio.Task[None]] = []
        self._busy = 0
        self._executor: ThreadPoolExecutor | None = None
        # How often a render asks the database whether its project was canceled by another
        # process; a cancel in this process is seen at the next step boundary.
        self.cancel_check_seconds = cancel_check_seconds
        self._changes: dict[str, threading.Event] = {}  # rendering here → "it changed"
        jobs.listeners.append(self._changed)

    @property
    def running(self) -> bool:
        """Whether the workers are up (an API-only node, with none, always is)."""
        return self.workers == 0 or any(not t.done() for t in self._tasks)

    async def start(self) -> None:
        """Recover what a previous run left unfinished, then start the workers."""
        self.queue.bind(asyncio.get_running_loop())
        if self.workers == 0:
            return  # an API-only node: processes with workers render what it queues
        # Renders run on threads of their own: a stop does not wait for one that hangs.
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="darkroom-render")
        for project_id in await asyncio.to_thread(self.jobs.recover):
            self.queue.put(project_id)
        self._tasks = [
            asyncio.create_task(self._work(), name=f"darkroom-worker-{i}")
            for i in range(self.workers)
        ]
        self._tasks.append(asyncio.create_task(self._poll(), name="darkroom-poller"))

    async def stop(self, grace: float = 10.0) -> None:
        """Let jobs in flight finish (up to ``grace`` seconds), then stop. A job cut off stays
        ``rendering`` and is re-run by the next start."""
        deadline = time.monotonic() + grace
        while self._busy and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _work(self) -> None:
        while True:
            project_id = await self.queue.get()
            self._busy += 1
            try:
                await self.run(project_id)
            except Exception:  # never let one job kill a worker
                log.exception("job %s crashed the worker loop", project_id)
            finally:
                self._busy -= 1

    async def _poll(self) -> None:
        """While idle, pick up projects that other processes queued in the shared database."""
        while True:
            await asyncio.sleep(self.poll_seconds)
            if self.queue.depth() == 0 and self._busy < self.workers:
                try:
                    found = await asyncio.to_thread(self.jobs.queued, self.workers * 4)
                except Exception:
                    log.exception("looking for queued projects failed")
                    continue
                for project_id in found:
                    self.queue.put(project_id)

    async def run(self, project_id: str) -> None:
        project = await asyncio.to_thread(self.jobs.claim, project_id)
        if project is None:
            return
        with request_context(project.request_id):
            await self._run(project)

    async def _run(self, project: Project) -> None:
        log.info("rendering %s on %s", project.id, project.backend)
        started = time.perf_counter()
        self._changes[project.id] = threading.Event()
        try:
            loop = asyncio.get_running_loop()
            context = contextvars.copy_context()  # the request id, for the render's log lines
            stored = await loop.run_in_executor(
                self._executor, context.run, self._render_and_store, project
            )
        except RenderCanceled:
            log.info("project %s canceled: rendering stopped", project.id)
            self.files.delete_project(project)
            return
        except BackendError as exc:
            log.warning("project %s failed: %s (%s)", project.id, exc.message, exc.code)
            await asyncio.to_thread(self._give_up, project, exc.code, exc.message)
            return
        except Exception as exc:
            log.exception("project %s: backend crashed", project.id)
            message = f"rendering failed ({type(exc).__name__})"
            await asyncio.to_thread(self._give_up, project, "backend_error", message)
            return
        finally:
            self._changes.pop(project.id, None)
        render_ms = round((time.perf_counter() - started) * 1000)
        completed = await asyncio.to_thread(
            functools.partial(
                self.jobs.complete,
                project.id,
                rendered_at=utcnow(),
                render_ms=render_ms,
                stored=stored,
            )
        )
        if not completed:
            self.files.delete_project(project)  # canceled while rendering
            return
        self.files.delete_sources(project.id, project.source_count)
        log.info("project %s complete in %d ms", project.id, render_ms)

    def _render_and_store(self, project: Project) -> list[StoredImage]:
        backend = self.backends.get(project.backend)
        if project.source_count and not backend.edits:
            raise BackendError(
                "edits_unsupported", f"the {backend.name} backend cannot edit images"
            )
        images = backend.render(self.request_for(project))
        if len(images) != project.image_count:
            raise BackendError(
                "backend_error",
                f"backend returned {len(images)} images instead of {project.image_count}",
            )
        stored = []
        for n, data in enumerate(images, start=1):
            encoded = encode(data, project.output_format, project.output_quality)
            self.files.save(project.id, n, encoded, project.output_format)
            stored.append(StoredImage(hashlib.sha256(encoded).hexdigest(), len(encoded)))
        return stored

    def request_for(self, project: Project) -> RenderRequest:
        try:
            sources, mask = self.files.load_sources(project)
        except FileNotFoundError:
            raise BackendError(
                "source_missing", "the source images of this edit are no longer stored"
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
            report=lambda text: self.jobs.note(project.id, text),
            canceled=self._cancel_check(project.id),
        )

    def _changed(self, project_id: str) -> None:
        flag = self._changes.get(project_id)
        if flag is not None:
            flag.set()

    def _cancel_check(self, project_id: str) -> Callable[[], bool]:
        """Whether the project has left ``rendering`` (canceled): asked at every step, it reads
        the database when this process saw the project change, and at least every
        ``cancel_check_seconds`` for a cancel made by another process."""
        changed = self._changes.get(project_id) or threading.Event()
        next_read = time.monotonic() + self.cancel_check_seconds
        stopped = False

        def canceled() -> bool:
            nonlocal next_read, stopped
            now = time.monotonic()
            if not stopped and (changed.is_set() or now >= next_read):
                changed.clear()
                next_read = now + self.cancel_check_seconds
                stopped = self.jobs.status_of(project_id) is not Status.RENDERING
            return stopped

        return canceled

    def _give_up(self, project: Project, code: str, message: str) -> None:
        self.jobs.fail(project.id, code, message)
        self.files.delete_project(project)
