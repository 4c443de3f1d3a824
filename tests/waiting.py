"""Waiting for a state in a test: poll with a deadline, never sleep for it (the one helper every
test shares)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    check: Callable[[], T],
    what: str | Callable[[], str] = "the condition",
    *,
    timeout: float = 20.0,
    interval: float = 0.02,
) -> T:
    """Call ``check`` until it returns something truthy, and return that. After ``timeout``
    seconds, an AssertionError saying what was awaited (``what``, or what it returns: it may
    describe the state found)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"not within {timeout:g} s: {said}")
        time.sleep(interval)
