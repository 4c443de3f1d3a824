"""Creating a project: the one path every create request takes, whatever its dialect.

Two entry points. :meth:`Creation.create` makes a project from what a route parsed (an
:class:`Order`): the request's sources are checked, the key's rate limit taken, the catalog
plans and prices it, its source images are loaded and stored, and it is charged and queued in
one transaction with the creates that arrive beside it (group commit, below). What comes back is
the project, or the project of an earlier request with the same Idempotency-Key (charged once;
the sources of the repeat are not kept). :meth:`Creation.deliver` is the synchronous answer (the
OpenAI dialect): it waits for the job, and a job still running when the wait ends, or whose
caller left, is canceled and refunded, so that nobody pays for images they never received.

A route is then: parse, one call here, render the answer.

Group commit: each request prepares its project (pricing and validation are its own), then
waits for the next batch. The requests waiting are charged and stored in one transaction, made
durable by one commit (one fsync), on a thread of its own (the committer): the event loop never
waits for the database, and goes on taking requests meanwhile, which form the next batch. A
transaction that meets a transient error (a lock held too long, a serialization failure, a
dropped connection) is run again from the start (:meth:`Database.transact`). Every request still
gets its own outcome, and none is answered before its project is committed. A batch waits for
the database as long as its least patient request does, and is given up on as soon as any of its
requests is (``store/deadline.py``): no request is answered 503 while its project might still
commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import anyio
from sqlalchemy.exc import IntegrityError

from darkroom.core.accounts import Principal
from darkroom.core.catalog import ImageSpec
from darkroom.core.errors import (
    DomainError,
    InvalidRequest,
    JobCanceled,
    JobFailed,
    JobTimedOut,
)
from darkroom.core.jobs import Jobs
from darkroom.core.openai_models import OpenAIImages
from darkroom.core.projects import PNG, Output, Project, Submission
from darkroom.core.ratelimit import RateLimiter
from darkroom.core.sources import SourceLimits, SourceSet, Uploaded, load_sources
from darkroom.core.status import Status
from darkroom.core.uploads import Uploads
from darkroom.core.watch import Watch
from darkroom.engine import encode
from darkroom.store.database import is_transient
from darkroom.store.deadline import (
    Deadline,
    calling,
    current_deadline,
    deadline_at,
    gave_up,
    wait_out,
)

log = logging.getLogger("darkroom.intake")

MAX_SOURCES = 16  # source images in one request
MAX_BATCH = 256  # creates committed in one transaction

# What a request asks for: Magic Hour's fields as the catalog takes them, or the OpenAI
# dialect's, which the catalog's ``[openai]`` table turns into those.
Ask = ImageSpec | OpenAIImages


@dataclass(frozen=True)
class Order:
    """One create request, as its route parsed it."""

    ask: Ask
    name: str | None = None
    seed: int | None = None
    idempotency_key: str | None = None
    # What makes two requests with one Idempotency-Key the same request (a digest of the body).
    request_hash: str | None = None
    output_format: str = "png"
    output_compression: int | None = None  # jpeg and webp: 0..100 (90 when absent)
    sources: SourceSet = field(default_factory=SourceSet)
    # The sources may name files uploaded through POST /v1/files/upload-urls (the image
    # editor's assets): the caller's own, not expired.
    uploaded_sources: bool = False
    # What the caller asked of a vendor beyond the prompt (OpenAI's moderation...).
    options: Mapping[str, str] | None = None
    # A request of this process waits to hand the images over (:meth:`Creation.deliver`);
    # should this process die first, the project is canceled and refunded.
    awaited: bool = False


class Creation:
    def __init__(
        self,
        jobs: Jobs,
        watch: Watch,
        limiter: RateLimiter,
        sources: SourceLimits,
        uploads: Uploads,
        *,
        sync_timeout: float,
    ) -> None:
        self.jobs = jobs
        self.watch = watch
        self.limiter = limiter
        self.sources = sources
        self.uploads = uploads
        self.sync_timeout = sync_timeout  # how long a synchronous answer waits for its images
        self._intake = _Intake(jobs)

    async def create(self, who: Principal, order: Order) -> Project:
        """Charge and queue the project ``order`` describes, or raise why not (nothing is
        charged then)."""
        sources = order.sources
        if len(sources.images) > MAX_SOURCES:
            raise InvalidRequest(f"send at most {MAX_SOURCES} source images", field="image")
        if sources.mask is not None and not sources.images:
            raise InvalidRequest("a mask needs an image to apply to", field="mask")
        await self.limiter.check_async(who.key_id)
        ask = order.ask
        spec = ask if isinstance(ask, ImageSpec) else ask.spec(self.jobs.catalog)
        count = len(sources.images)
        images: list[bytes] = []
        mask = None
        if count:
            # Everything the request alone decides (model, tier, inputs, counts, sizes) is
            # refused before any source is fetched or read.
            self.jobs.catalog.plan(spec, who.tier)
            loaded, mask = await load_sources(sources, self.sources, self._uploaded(who, order))
            images = [png for png, _ in loaded]
            if spec.follow is not None:  # aspect_ratio auto: the images take the first's shape
                spec = replace(spec, follow=loaded[0][1])
        prepared = self.jobs.prepare(
            who,
            spec,
            name=order.name,
            seed=order.seed,
            idempotency_key=order.idempotency_key,
            request_hash=order.request_hash,
            output=_output(order.output_format, order.output_compression),
            source_count=count,
            has_mask=mask is not None,
            options=order.options,
            awaited=order.awaited,
        )
        if count:
            await asyncio.to_thread(self.jobs.keep_sources, prepared.id, images, mask)
        try:
            project = await self._intake.submit(prepared)
        except BaseException:
            if count:  # not stored
                await asyncio.to_thread(self.jobs.discard_sources, prepared.id, count)
            raise
        if project.id != prepared.id and count:  # a repeat of an earlier request
            await asyncio.to_thread(self.jobs.discard_sources, prepared.id, count)
        return project

    def _uploaded(self, who: Principal, order: Order) -> Uploaded | None:
        """What reads the uploaded files an order's sources may name (the caller's own)."""
        if not order.uploaded_sources:
            return None
        return lambda path, field: self.uploads.image(who.account_id, path, field=field)

    async def deliver(
        self,
        who: Principal,
        project: Project,
        *,
        abandoned: Callable[[], Awaitable[bool]] | None = None,
    ) -> Project:
        """The project once complete, for the synchronous answer that hands its images over. A
        job still running after ``sync_timeout`` seconds, or once ``abandoned()``, is canceled
        and refunded; a job that did not complete raises the matching :class:`JobNotDone`."""
        # Charged, and waiting for the images: the database calls from here wait an outage out
        # rather than answer a 503 that the client would meet by paying for the images again.
        wait_out()
        wait = self.sync_timeout
        project = await self.watch.until_terminal(
            who.account_id, project.id, wait, abandoned=abandoned
        )
        if not project.status.terminal:
            charged = project.credits_charged
            project = await anyio.to_thread.run_sync(
                self.jobs.cancel, who.account_id, project.id, "refund: sync wait ended"
            )
            if project.status is not Status.COMPLETE:  # it may have finished just now
                raise JobTimedOut(
                    f"the images were not ready within {wait:g} seconds; the job was canceled "
                    f"and its {charged} credits refunded",
                    project.id,
                )
        if project.status is Status.ERROR:
            raise JobFailed(
                f"image generation failed: {project.error_message or project.error_code}; "
                "the credits were refunded",
                project.id,
                project.error_code or "backend_error",
            )
        if project.status is Status.CANCELED:
            raise JobCanceled("the job was canceled before it finished; refunded", project.id)
        return project

    def delivered(self, project_id: str) -> None:
        """The synchronous answer with the project's images is written: mark it delivered (a
        blocking call). Unmarked, were this process to die, the project would be refunded."""
        try:
            self.jobs.answered(project_id)
        except Exception:
            # Not marked: were this node to die before the mark is made, the images it handed
            # over would be refunded (the error that costs the caller nothing).
            log.exception("project %s: answered, but could not be marked delivered", project_id)

    async def abandon(self, who: Principal, project: Project, note: str) -> None:
        """The caller of a synchronous answer went away before it was handed over: the job is
        canceled and refunded (one that has ended stays as it is). Shielded: it runs to its end
        even in a task being cancelled (a closed stream)."""
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.jobs.cancel, who.account_id, project.id, note)

    def close(self) -> None:
        self._intake.close()


def _output(fmt: str, compression: int | None) -> Output:
    if fmt == "png":
        return PNG
    return Output(fmt, encode.quality(compression))


Outcome = Project | DomainError


class _Intake:
    """Group commit of creates (see the module's docstring)."""

    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs
        # Each create waiting for the next batch, with its request's deadline (None: no limit).
        self._waiting: list[tuple[Submission, asyncio.Future[Outcome], Deadline | None]] = []
        self._committer: ThreadPoolExecutor | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def submit(self, item: Submission) -> Project:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._waiting.append((item, future, current_deadline()))
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = loop.create_task(self._drain())
        # The request waits on the database: the committer's call for it.
        with calling(local=self.jobs.db.is_sqlite):
            outcome = await future
        if isinstance(outcome, DomainError):
            raise outcome
        return outcome

    async def _drain(self) -> None:
        """Commit batches, one at a time, until nobody is waiting."""
        if self._committer is None:
            self._committer = ThreadPoolExecutor(1, thread_name_prefix="darkroom-commit")
        await asyncio.sleep(0)  # let the requests of this turn of the loop join the batch
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            batch = self._still_waited_for(batch)
            if not batch:
                continue
            items = [item for item, _, _ in batch]
            deadlines = [deadline for _, _, deadline in batch]
            patience = None
            if None not in deadlines:
                patience = Deadline.earliest(d for d in deadlines if d is not None)
            try:
                outcomes = await self._commit(items, patience)
            except Exception as exc:
                log.warning(
                    "a batch of %d creates failed", len(batch), exc_info=not is_transient(exc)
                )
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future, _), outcome in zip(batch, outcomes, strict=True):
                if not future.done():
                    future.set_result(outcome)

    @staticmethod
    def _still_waited_for(
        batch: list[tuple[Submission, asyncio.Future[Outcome], Deadline | None]],
    ) -> list[tuple[Submission, asyncio.Future[Outcome], Deadline | None]]:
        """The creates whose request still waits; the others (answered 503 at their deadline
        while an earlier batch held the database) are not made."""
        kept = []
        for entry in batch:
            _, future, deadline = entry
            if deadline is not None and deadline.abandoned:
                if not future.done():
                    future.set_exception(gave_up())
            else:
                kept.append(entry)
        return kept

    async def _commit(self, items: list[Submission], deadline: Deadline | None) -> list[Outcome]:
        loop = asyncio.get_running_loop()

        def commit() -> list[Outcome]:
            with deadline_at(deadline):
                return self._commit_now(items)

        return await loop.run_in_executor(self._committer, commit)

    def _commit_now(self, items: list[Submission]) -> list[Outcome]:
        """Charge, store and queue one batch (on the committer thread)."""
        try:
            # stage() writes only through conn: a transaction run again starts from scratch.
            outcomes = self.jobs.db.transact(lambda conn: self.jobs.stage(conn, items))
        except IntegrityError:
            # A race on an Idempotency-Key with another process: settle the items one by one
            # (submit_many queues what it creates).
            return self.jobs.submit_many(items)
        self.jobs.publish(items, outcomes)
        return outcomes

    def close(self) -> None:
        if self._committer is not None:
            self._committer.shutdown(wait=True)
            self._committer = None
