"""Background sweeps the heartbeat starts: at most one every so often, each on a thread of its
own, so that a slow one (deleting from a bucket) never delays the renewal of a lease."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from darkroom.store.database import is_transient

log = logging.getLogger("darkroom.periodic")


class Periodic:
    def __init__(self, name: str, sweep: Callable[[], Any], *, every: float = 60.0) -> None:
        self.name = name
        self.sweep = sweep
        self.every = every
        self._next = 0.0
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        """Heartbeat task: start a sweep when one is due and none is running."""
        if time.monotonic() < self._next:
            return
        if self._thread is not None and self._thread.is_alive():
            return
        self._next = time.monotonic() + self.every
        self._thread = threading.Thread(target=self._logged, name=f"darkroom-{self.name}")
        self._thread.daemon = True
        self._thread.start()

    def _logged(self) -> None:
        try:
            self.sweep()
        except Exception as exc:
            log.warning(
                "%s sweep failed; the next one retries", self.name, exc_info=not is_transient(exc)
            )
