"""Backends for tests: ones that fail, crash, or hold a render until released."""

from __future__ import annotations

import threading
import time

from darkroom.engine.base import BackendError, RenderRequest
from darkroom.engine.preview import PreviewBackend


class Stuck:
    """A backend that never finishes until released, like a worker that died mid-render."""

    name = "preview"
    edits = True

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def render(self, request: RenderRequest) -> list[bytes]:
        self.entered.set()
        self.release.wait(30)
        raise BackendError("interrupted", "the test ended this render")


class Slow:
    """The preview backend, after waiting until released (or ``delay`` seconds)."""

    name = "preview"
    edits = True

    def __init__(self, delay: float = 30.0) -> None:
        self.delay = delay
        self.entered = threading.Event()
        self.release = threading.Event()
        self.preview = PreviewBackend()
        self.finished_at: float | None = None  # time.monotonic() when the last render returned

    def render(self, request: RenderRequest) -> list[bytes]:
        self.entered.set()
        self.release.wait(self.delay)
        images = self.preview.render(request)
        self.finished_at = time.monotonic()
        return images


class Failing:
    name = "preview"
    edits = True

    def render(self, request: RenderRequest) -> list[bytes]:
        raise BackendError("gpu_on_fire", "the GPU is on fire")


class Crashing:
    name = "preview"
    edits = True

    def render(self, request: RenderRequest) -> list[bytes]:
        raise RuntimeError("segfault-ish")


class Stepping:
    """The preview backend behind ``steps`` slow steps that honour cancellation like a real
    denoising loop: ``step`` is the step it is at, ``stopped_at`` the step at which a cancel was
    seen."""

    name = "preview"
    edits = True

    def __init__(self, steps: int = 200, step_seconds: float = 0.02) -> None:
        self.steps = steps
        self.step_seconds = step_seconds
        self.entered = threading.Event()
        self.step = 0
        self.stopped_at: int | None = None
        self.preview = PreviewBackend()

    def render(self, request: RenderRequest) -> list[bytes]:
        self.entered.set()
        for step in range(self.steps):
            self.step = step
            try:
                request.check_canceled()
            except Exception:
                self.stopped_at = step
                raise
            time.sleep(self.step_seconds)
        return self.preview.render(request)
