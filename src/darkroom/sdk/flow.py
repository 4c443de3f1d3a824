"""What the SDK does, written once for both clients: retries, waiting for a project, and
downloading its images, as generators (a :data:`Flow`) that yield the I/O they need
(:class:`Send`, :class:`Fetch`, :class:`Sleep`, :class:`Notify`) and get its result back. The
sync client runs a flow with blocking I/O, the async client with ``await``; neither holds any
logic of its own."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from darkroom.sdk import calls
from darkroom.sdk.calls import Call
from darkroom.sdk.errors import (
    APIConnectionError,
    APIStatusError,
    DarkroomError,
    DownloadError,
    GenerateTimeoutError,
    error_for,
)
from darkroom.sdk.files import Sink, file_name, place, verify
from darkroom.sdk.retry import RetryPolicy
from darkroom.sdk.types import (
    CreateResponse,
    Download,
    ImageProject,
    ImageProjectWithDownloads,
    Progress,
    Stage,
)

T = TypeVar("T")

# The longest a single long poll holds; the server allows up to 60 s.
LONG_POLL_SECONDS = 30.0
# How long after generate's deadline a long poll's answer may still arrive.
ANSWER_GRACE_SECONDS = 1.0
# How long cancel_on_timeout may spend canceling, past generate's own timeout.
CANCEL_SECONDS = 10.0


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, headers (lower-case names) and body (JSON, text or None)."""

    status: int
    headers: Mapping[str, str]
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class Send:
    call: Call[Any]
    timeout: float | None = None  # a cap from the overall deadline


@dataclass(frozen=True)
class Fetch:
    """GET ``url`` without the API key and, if it answers 2xx, stream its body into ``sink``."""

    url: str
    sink: Sink
    timeout: float | None = None


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Notify:
    callback: Callable[[Progress], Any]
    progress: Progress


Effect = Send | Fetch | Sleep | Notify
# A flow: a generator that yields the effects it needs, is sent their results, returns a T.
Flow = Generator[Effect, Any, T]


def clock() -> float:
    return time.monotonic()


@dataclass(frozen=True)
class Waiting:
    """How ``generate`` (and ``check_result``) wait and download."""

    started: float
    timeout: float | None = None
    poll_interval: float = 0.5
    on_progress: Callable[[Progress], Any] | None = None

    @property
    def deadline(self) -> float | None:
        return None if self.timeout is None else self.started + self.timeout

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - clock()

    def expired(self, project: ImageProject) -> GenerateTimeoutError:
        return GenerateTimeoutError(
            f"project {project.id} is still {project.status} after {self.timeout:g} s", project
        )

    def progress(self, stage: Stage, project: ImageProject, done: int = 0) -> Flow[None]:
        if self.on_progress is not None:
            elapsed = clock() - self.started
            total = len(project.downloads) if stage in ("downloading", "complete") else 0
            yield Notify(self.on_progress, Progress(stage, project, elapsed, done, total))


def request(call: Call[T], policy: RetryPolicy, deadline: float | None = None) -> Flow[T]:
    """Send ``call``, retrying connection failures, 429 and 5xx (see :class:`RetryPolicy`) with
    the very same request, its Idempotency-Key included; never sleeping past ``deadline``."""
    retries = policy.max_retries if call.max_retries is None else call.max_retries
    attempt = 0
    while True:
        error: DarkroomError
        try:
            reply: Reply = yield Send(call, _cap(call.timeout, deadline))
            if reply.ok:
                return call.parse(reply.body)
            error = error_for(reply.status, reply.body, reply.headers)
        except APIConnectionError as exc:
            error = exc
        delay = policy.delay(error, attempt) if attempt < retries else None
        if delay is None or not (yield from _sleep_before(deadline, delay)):
            raise error
        attempt += 1


def _cap(timeout: float | None, deadline: float | None) -> float | None:
    """A request timeout that does not outlast the deadline (None: the client's own)."""
    if deadline is None:
        return timeout
    left = max(0.05, deadline - clock())
    return left if timeout is None else min(timeout, left)


def _sleep_before(deadline: float | None, delay: float) -> Flow[bool]:
    """Sleep ``delay`` unless that ends past ``deadline``; whether it slept."""
    if deadline is not None and clock() + delay >= deadline:
        return False
    yield Sleep(delay)
    return True


@dataclass(frozen=True)
class Finish:
    """What ``generate`` and ``check_result`` do once the project exists."""

    waiting: Waiting
    wait_for_completion: bool = True
    download_outputs: bool = True
    download_directory: str | Path | None = None
    cancel_on_timeout: bool = False


def generate(
    create: Call[CreateResponse], policy: RetryPolicy, finish: Finish
) -> Flow[ImageProjectWithDownloads]:
    """Create, then :func:`check_result` (wait, download)."""
    created = yield from request(create, policy, finish.waiting.deadline)
    return (yield from check_result(created.id, policy, finish))


def check_result(id: str, policy: RetryPolicy, finish: Finish) -> Flow[ImageProjectWithDownloads]:
    """The project, after waiting for it to end and downloading its images, as asked."""
    waiting = finish.waiting
    project = yield from request(calls.get_project(id), policy, waiting.deadline)
    if finish.wait_for_completion:
        try:
            project = yield from wait(project, policy, waiting)
        except GenerateTimeoutError as exc:
            if finish.cancel_on_timeout:
                yield from cancel_after_timeout(exc, policy)
            raise
    paths = None
    if finish.download_outputs and project.status == "complete":
        where = finish.download_directory
        directory = Path(where) if where is not None else Path.cwd()
        paths = yield from download_all(project, directory, policy, waiting)
    yield from waiting.progress(project.status, project, len(paths or ()))
    return ImageProjectWithDownloads(**project.model_dump(), downloaded_paths=paths)


def cancel_after_timeout(exc: GenerateTimeoutError, policy: RetryPolicy) -> Flow[None]:
    """Cancel (and so refund) the project that ``generate`` gave up waiting for, and put its
    final state on the error; one that completed meanwhile is left as it is."""
    deadline = clock() + CANCEL_SECONDS
    try:
        exc.project = yield from request(calls.cancel_project(exc.project.id), policy, deadline)
    except APIStatusError as error:
        if error.status_code != 409:  # 409: it ended just now, and is not canceled
            raise
    else:
        exc.message = f"{exc.message}; it was canceled and refunded"
        exc.args = (exc.message,)


def wait(project: ImageProject, policy: RetryPolicy, waiting: Waiting) -> Flow[ImageProject]:
    """Wait until the project has ended, by darkroom's long poll: each request returns as soon
    as the status changes, and each status on the way is reported. A server without the long
    poll answers at once; then poll every ``poll_interval`` seconds as the published SDK does."""
    if not project.done:
        yield from waiting.progress(project.status, project)
    while not project.done:
        remaining = waiting.remaining()
        if remaining is not None and remaining <= 0:
            raise waiting.expired(project)
        hold = LONG_POLL_SECONDS if remaining is None else min(LONG_POLL_SECONDS, remaining)
        asked = clock()
        call = calls.get_project(project.id, wait=hold, since=project.status)
        # The server holds the request until the deadline at most: give its answer time to
        # arrive, and a failure past the deadline is the deadline's.
        grace = None if waiting.deadline is None else waiting.deadline + ANSWER_GRACE_SECONDS
        try:
            latest = yield from request(call, policy, grace)
        except DarkroomError as exc:
            left = waiting.remaining()
            if left is None or left > 0:
                raise
            raise waiting.expired(project) from exc
        if latest.status != project.status:
            if not latest.done:
                yield from waiting.progress(latest.status, latest)
        elif clock() - asked < hold / 2:  # answered at once: no long poll here
            left = waiting.remaining()
            yield Sleep(
                waiting.poll_interval
                if left is None
                else max(0.0, min(waiting.poll_interval, left))
            )
        project = latest
    return project


def download_all(
    project: ImageProject, directory: Path, policy: RetryPolicy, waiting: Waiting
) -> Flow[list[str]]:
    """Every image of a complete project, in order, saved into ``directory`` (created if
    missing) under the URL's file name, never replacing an existing file."""
    directory.mkdir(parents=True, exist_ok=True)
    paths: list[str] = []
    for n, item in enumerate(project.downloads, start=1):
        yield from waiting.progress("downloading", project, n - 1)
        path = yield from download(item, directory, f"{project.id}-{n}", policy, waiting.deadline)
        paths.append(str(path))
    return paths


def download(
    item: Download, directory: Path, fallback: str, policy: RetryPolicy, deadline: float | None
) -> Flow[Path]:
    """One file, streamed and verified (see :func:`files.verify`); retried like a request."""
    attempt = 0
    while True:
        error: DarkroomError
        sink = Sink(directory)
        try:
            reply: Reply = yield Fetch(item.url, sink, _cap(None, deadline))
            if reply.ok:
                verify(sink, item, reply.headers)
                return place(sink, directory, file_name(item.url, fallback))
            status_error = error_for(reply.status, reply.body, reply.headers)
            error = status_error
            if status_error.status_code in (401, 403, 404, 410):
                error = DownloadError(f"download refused: {status_error}", item.url)
        except (APIConnectionError, DownloadError) as exc:
            error = exc
        finally:
            if sink.path.exists():
                sink.discard()
        delay = policy.delay(error, attempt) if attempt < policy.max_retries else None
        if delay is None or not (yield from _sleep_before(deadline, delay)):
            raise error
        attempt += 1
