"""The contract between the job runner and every image backend.

A backend turns one :class:`RenderRequest` (a whole project: ``count`` images of one size) into a
list of encoded PNG images. Backends are synchronous and CPU/GPU bound; the runner calls them off
the event loop. They raise :class:`BackendError` for failures that should end the project in
``error`` with a stable code (the credits are then refunded by the runner).

A request with ``sources`` is an edit (OpenAI's ``images.edit``, the Magic Hour editor): every image
is a new version of the first source, changed where the ``mask`` is transparent, or all over when
there is no mask; a model that takes several references reads them all, in order. ``strength``
says how far an image-to-image edit may move from its source. Only a backend whose ``edits`` is
true can honour that (the diffusers backend per model: its families say which can).

A backend that denoises calls ``on_step`` after every denoising step with a :class:`Step`
(which step of how many, the latents), so progress and previews can follow a render.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class StyleHint:
    """What a style tool tells a backend beyond the prompt text."""

    tool: str
    palette: tuple[str, ...]  # "#rrggbb" colours, most characteristic first
    composition: str  # one of the preview backend's layouts, see engine/preview.py


@dataclass(frozen=True)
class Step:
    """One denoising step done, as a backend reports it to ``RenderRequest.on_step``."""

    index: int  # 0-based, of ``count`` steps in this call
    count: int
    first_image: int  # the project's index of the first image in this batch
    images: int  # how many images the batch denoises (the latents' batch)
    latents: Any = field(repr=False)  # the pipeline's latents after the step (a torch tensor)


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
    # PNG bytes of the images to edit, in order; empty for a plain generation
    sources: tuple[bytes, ...] = field(default=(), repr=False)
    # PNG with an alpha channel, the size of sources[0]: fully transparent pixels mark where the
    # image should change, opaque ones where it must stay (OpenAI's semantics); None: anywhere
    mask: bytes | None = field(default=None, repr=False)
    # How far an image-to-image edit moves from its source, 0 (not at all) to 1 (only its layout
    # is kept, or nothing); None: the model's default. Ignored by models that take none.
    strength: float | None = None
    # What the caller asked of a vendor beyond the prompt (OpenAI's "moderation",
    # "input_fidelity"); a provider passes on those its upstream takes, others ignore them.
    options: Mapping[str, str] = field(default_factory=dict, hash=False)
    # Tells the project's status what the backend is doing before it renders (e.g. "loading the
    # weights"); None clears it. Absent in tests and benchmarks that call a backend directly.
    report: Callable[[str | None], None] | None = field(default=None, repr=False, compare=False)
    # Whether the project was canceled: a backend asks at each step boundary (between images,
    # between denoising steps) and, if so, stops with :class:`RenderCanceled`.
    canceled: Callable[[], bool] | None = field(default=None, repr=False, compare=False)
    # A backend that calls a vendor's API reports what the vendor counted (``input_tokens``,
    # ``output_tokens``, ``images``...), added up over its calls; recorded on the project.
    usage: Callable[[dict[str, int]], None] | None = field(default=None, repr=False, compare=False)
    # Called after every denoising step (after the cancel check), on the render thread: it should
    # return quickly. Progress and live previews hook in here.
    on_step: Callable[[Step], None] | None = field(default=None, repr=False, compare=False)

    def check_canceled(self) -> None:
        """Raise :class:`RenderCanceled` if the project was canceled."""
        if self.canceled is not None and self.canceled():
            raise RenderCanceled(self.project_id)


class BackendError(Exception):
    """A render failed; ``code`` is stable and shown to the user as ``error.code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RenderCanceled(Exception):
    """The project was canceled while rendering; the backend stopped at a step boundary."""


class Backend(Protocol):
    name: str
    edits: bool  # whether render honours request.sources and request.mask (an edit)

    def render(self, request: RenderRequest) -> list[bytes]:
        """Return ``request.count`` PNG-encoded images of ``request.width`` x ``request.height``."""
        ...
