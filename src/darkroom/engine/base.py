"""The contract between the job runner and every image backend.

A backend turns one :class:`RenderRequest` (a whole project: ``count`` images of one size) into a
list of encoded PNG images. Backends are synchronous and CPU/GPU bound; the runner calls them off
the event loop. They raise :class:`BackendError` for failures that should end the project in
``error`` with a stable code (the credits are then refunded by the runner).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class StyleHint:
    """What a style tool tells a backend beyond the prompt text."""

    tool: str
    palette: tuple[str, ...]  # "#rrggbb" colours, most characteristic first
    composition: str  # one of the preview backend's layouts, see engine/preview.py


@dataclass(frozen=True)
class RenderRequest:
    project_id: str
    model: str
    prompt: str  # the final prompt, after the style tool's template was applied
    user_prompt: str  # what the caller typed
    style: StyleHint
    width: int
    height: int
    count: int
    seed: int  # image i of the project uses seed + i


class BackendError(Exception):
    """A render failed; ``code`` is stable and shown to the user as ``error.code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Backend(Protocol):
    name: str

    def render(self, request: RenderRequest) -> list[bytes]:
        """Return ``request.count`` PNG-encoded images of ``request.width`` x ``request.height``."""
        ...
