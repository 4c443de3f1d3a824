"""What every model family shares, and the render loop they all run.

A family (one module each beside this one) says, as data, what it can do
(:class:`Capabilities`), its recipe (:class:`Recipe`: steps, guidance, sequence length,
strength), which diffusers pipeline class serves each :class:`Mode` and which ones a weights
directory may hold; and, as code, how a prepared :class:`Job` becomes the pipeline's call
arguments (:meth:`Family.arguments`). Everything else is here:

- choosing the mode from the request (text to image; image to image with a strength; inpaint
  with a mask; several references) and refusing what the family cannot do with a
  :class:`~darkroom.engine.base.BackendError` of a stable code;
- the pipeline of each mode, made from the loaded one with ``from_pipe`` (the same components,
  no second copy of the weights);
- sizing the sources (``engine/sources.py``), rendering at the family's size multiple and
  cropping back to the requested size;
- batches of ``max_batch`` images, image ``i`` from its own CPU generator seeded ``seed + i``, so
  an image depends on its seed alone, with or without sources;
- the step callback: a canceled project (or a lost lease) stops at the next denoising step, and
  ``request.on_step`` hears of every step;
- inpainting keeps the unmasked pixels of the source exactly.

Nothing here imports torch or diffusers at import time: the catalog reads the capabilities of a
family without loading any of it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from darkroom.engine import devices
from darkroom.engine import sources as source_images
from darkroom.engine.base import BackendError, RenderRequest, Step

if TYPE_CHECKING:
    from darkroom.engine.weights import WeightsEntry


class Mode(StrEnum):
    GENERATE = "generate"  # text to image
    IMAGE = "image"  # image to image: the first source, moved by a strength
    INPAINT = "inpaint"  # the first source, changed where the mask says
    REFERENCES = "references"  # a new image from the prompt and every source


@dataclass(frozen=True)
class Capabilities:
    """What a family can do, for the catalog, ``/v1/models`` and the refusals before a charge."""

    generate: bool  # text to image, without a source
    edit: bool  # takes source images
    references: int  # the most source images one request may carry (0: none)
    mask: bool  # inpainting: changes only where the mask says
    strength: bool  # honours a strength (how far an edit moves from its source)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Recipe:
    """A family's defaults; a model's weights table overrides any of them."""

    steps: int
    guidance: float
    max_sequence_length: int | None = None
    strength: float = 0.6  # image to image
    mask_strength: float = 1.0  # inpainting: the masked part is drawn anew


@dataclass(frozen=True)
class Settings:
    """A model's recipe as it runs: its weights table over its family's defaults."""

    steps: int
    guidance: float
    max_sequence_length: int | None
    strength: float
    mask_strength: float
    max_batch: int
    max_sources: int


@dataclass(frozen=True)
class Job:
    """One request, prepared: what every batch of it hands the pipeline."""

    mode: Mode
    prompt: str
    width: int  # the render size: the request's, rounded up to the family's multiple
    height: int
    steps: int
    settings: Settings
    image: Any = None  # PIL, RGB, the render size: the image to change (IMAGE, INPAINT)
    mask: Any = None  # PIL, "L", the render size: 255 where the image changes (INPAINT)
    references: tuple[Any, ...] = ()  # PIL, RGB: REFERENCES (all sources) or INPAINT (the rest)
    strength: float | None = None  # IMAGE and INPAINT


class Family(ABC):
    """One model family; an instance holds one loaded model's pipelines."""

    name: ClassVar[str]  # what a weights table's ``family`` says
    title: ClassVar[str]
    # The pipeline classes (model_index.json's ``_class_name``) whose weights this family loads.
    pipeline_classes: ClassVar[tuple[str, ...]]
    # The diffusers pipeline class of each mode it can run; the first is the one it loads.
    mode_classes: ClassVar[Mapping[Mode, str]]
    # The mode of an edit without a mask: IMAGE or REFERENCES.
    edit_mode: ClassVar[Mode] = Mode.IMAGE
    capabilities: ClassVar[Capabilities]
    recipe: ClassVar[Recipe]
    # References are scaled down to at most this many pixels (at their own aspect ratio).
    max_source_pixels: ClassVar[int] = 1024 * 1024

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline  # as loaded: the first of mode_classes
        self._modes: dict[Mode, Any] = {next(iter(self.mode_classes)): pipeline}

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def load(cls, directory: Path, dtype: Any) -> Family:
        """The family's pipeline from a local directory (already checked to hold its weights)."""
        pipeline_class = diffusers_class(next(iter(cls.mode_classes.values())))
        pipeline = pipeline_class.from_pretrained(
            str(directory), dtype=dtype, local_files_only=True, **cls.load_arguments(directory)
        )
        pipeline.set_progress_bar_config(disable=True)
        return cls(pipeline)

    @classmethod
    def load_arguments(cls, directory: Path) -> dict[str, Any]:
        """Components a family builds itself rather than leave to ``from_pretrained``."""
        return {}

    def to(self, device: str) -> Family:
        self.pipeline.to(device)
        return self

    def pipeline_for(self, mode: Mode) -> Any:
        """The pipeline of ``mode``, made once from the loaded one with ``from_pipe``."""
        pipeline = self._modes.get(mode)
        if pipeline is None and type(self.pipeline).__name__ == self.mode_classes[mode]:
            pipeline = self._modes[mode] = self.pipeline
        if pipeline is None:
            pipeline = diffusers_class(self.mode_classes[mode]).from_pipe(self.pipeline)
            pipeline.set_progress_bar_config(disable=True)
            self._modes[mode] = pipeline
        return pipeline

    # -- what a family says about a request ------------------------------------------------------

    @classmethod
    def settings(cls, entry: WeightsEntry) -> Settings:
        recipe = cls.recipe
        limit = cls.capabilities.references
        return Settings(
            steps=entry.steps if entry.steps is not None else recipe.steps,
            guidance=entry.guidance if entry.guidance is not None else recipe.guidance,
            max_sequence_length=(
                entry.max_sequence_length
                if entry.max_sequence_length is not None
                else recipe.max_sequence_length
            ),
            strength=entry.strength if entry.strength is not None else recipe.strength,
            mask_strength=recipe.mask_strength,
            max_batch=entry.max_batch,
            max_sources=min(limit, entry.max_sources) if entry.max_sources else limit,
        )

    @classmethod
    def capabilities_for(cls, entry: WeightsEntry) -> Capabilities:
        """What a model of this family can do as its weights table runs it (``max_sources``
        lowers the family's source cap): what the catalog and /v1/models show."""
        limit = cls.settings(entry).max_sources
        return replace(cls.capabilities, references=limit)

    def multiple(self) -> int:
        """What both sides of a render must be a multiple of (VAE scale x patch size)."""
        scale = int(getattr(self.pipeline, "vae_scale_factor", 8))
        return _lcm(source_images.MULTIPLE, 2 * scale)

    @abstractmethod
    def arguments(self, job: Job) -> dict[str, Any]:
        """The family's own call arguments for ``job`` (guidance, sources, strength...)."""

    def batch_arguments(self, job: Job, size: int) -> dict[str, Any]:
        """What changes with the batch: the image to change, once per image, so that each
        image's generator draws its own encoding of it (the pipelines sample the VAE with the
        first generator only when given one image), and image ``i`` stays seed ``i``'s."""
        if job.mode in (Mode.IMAGE, Mode.INPAINT):
            return {"image": [job.image] * size}
        return {}

    def image_arguments(self, job: Job) -> dict[str, Any]:
        """``strength`` (and ``mask_image``): the image-to-image and inpainting pipelines'
        shared arguments besides the image (:meth:`batch_arguments`); nothing otherwise."""
        if job.mode is Mode.IMAGE:
            return {"strength": job.strength}
        if job.mode is Mode.INPAINT:
            return {"mask_image": job.mask, "strength": job.strength}
        return {}

    # -- rendering -------------------------------------------------------------------------------

    def render(self, request: RenderRequest, settings: Settings) -> list[Any]:
        """The request's images (PIL, RGB, the requested size)."""
        import torch

        decoded = source_images.decode(request.sources, request.mask)
        mode = self.mode_of(decoded, settings)
        job = self.prepare(request, decoded, mode, settings)
        pipeline = self.pipeline_for(mode)
        arguments = {**self.common_arguments(pipeline, job), **self.arguments(job)}
        images: list[Any] = []
        for start in range(0, request.count, settings.max_batch):
            request.check_canceled()
            size = min(settings.max_batch, request.count - start)
            # CPU generators: the same seed gives the same noise on any device.
            generators = [
                torch.Generator("cpu").manual_seed(request.seed + start + i) for i in range(size)
            ]
            callback = step_callback(request, start, size, job.steps)
            with torch.inference_mode():
                output = pipeline(
                    **arguments,
                    **self.batch_arguments(job, size),
                    num_images_per_prompt=size,
                    generator=generators,
                    callback_on_step_end=callback,
                )
            images.extend(self.finish(image, job, request) for image in output.images)
        if len(images) != request.count:
            raise BackendError(
                "backend_error", f"the pipeline made {len(images)} of {request.count} images"
            )
        return images

    def mode_of(self, decoded: source_images.Sources, settings: Settings) -> Mode:
        """What the request asks of the family, or why the family cannot do it."""
        can = self.capabilities
        count = len(decoded.images)
        if count == 0:
            if not can.generate:
                raise BackendError(
                    "source_required", f"{self.title} edits images: send at least one source image"
                )
            return Mode.GENERATE
        if not can.edit:
            raise BackendError("edits_unsupported", f"{self.title} cannot edit images")
        if count > settings.max_sources:
            raise BackendError(
                "too_many_sources",
                f"{self.title} takes at most {settings.max_sources} source "
                f"image{'s' if settings.max_sources > 1 else ''}, not {count}",
            )
        if decoded.mask is not None:
            if not can.mask:
                raise BackendError("mask_unsupported", f"{self.title} cannot inpaint with a mask")
            return Mode.INPAINT
        return self.edit_mode

    def prepare(
        self,
        request: RenderRequest,
        decoded: source_images.Sources,
        mode: Mode,
        settings: Settings,
    ) -> Job:
        multiple = self.multiple()
        width = math.ceil(request.width / multiple) * multiple
        height = math.ceil(request.height / multiple) * multiple
        image = mask = None
        references: tuple[Any, ...] = ()
        strength: float | None = None
        steps = settings.steps
        if mode in (Mode.IMAGE, Mode.INPAINT):
            image = source_images.fit(decoded.images[0], (width, height))
            default = settings.strength if mode is Mode.IMAGE else settings.mask_strength
            strength = request.strength if request.strength is not None else default
            # diffusers runs int(steps x strength) of them: at least one must run
            steps = max(steps, math.ceil(1 / strength - 1e-9))
        if mode is Mode.INPAINT and decoded.mask is not None:
            mask = source_images.fit(decoded.mask, (width, height), resample=2)  # bilinear
            references = self._references(decoded.images[1:], multiple)
        elif mode is Mode.REFERENCES:
            references = self._references(decoded.images, multiple)
        return Job(
            mode=mode,
            prompt=request.prompt,
            width=width,
            height=height,
            steps=steps,
            settings=settings,
            image=image,
            mask=mask,
            references=references,
            strength=strength,
        )

    def _references(self, images: tuple[Any, ...], multiple: int) -> tuple[Any, ...]:
        return tuple(source_images.within(i, self.max_source_pixels, multiple) for i in images)

    def common_arguments(self, pipeline: Any, job: Job) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "prompt": job.prompt,
            "width": job.width,
            "height": job.height,
            "num_inference_steps": job.steps,
            "output_type": "pil",
        }
        if job.settings.max_sequence_length is not None and devices.accepts(
            pipeline, "max_sequence_length"
        ):
            arguments["max_sequence_length"] = job.settings.max_sequence_length
        return arguments

    def finish(self, image: Any, job: Job, request: RenderRequest) -> Any:
        """One output as the request wants it: RGB, the unmasked source kept, the exact size."""
        image = image.convert("RGB")
        if image.size != (job.width, job.height):  # a pipeline that rounded the size its way
            image = source_images.fit(image, (job.width, job.height))
        if job.mode is Mode.INPAINT:
            image = source_images.keep_unmasked(image, job.image, job.mask)
        if image.size != (request.width, request.height):
            image = source_images.fit(image, (request.width, request.height))
        return image


def step_callback(
    request: RenderRequest, first: int, size: int, steps: int
) -> Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]:
    """A diffusers step-end callback: stops a canceled render (``RenderCanceled``) and tells
    ``request.on_step`` of each step."""

    def callback(
        pipeline: Any, step: int, _timestep: Any, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        request.check_canceled()
        if request.on_step is not None:
            count = getattr(pipeline, "_num_timesteps", None) or steps
            request.on_step(Step(step, int(count), first, size, tensors.get("latents")))
        return {}

    return callback


def diffusers_class(name: str) -> Any:
    import diffusers

    return getattr(diffusers, name)


def _lcm(a: int, b: int) -> int:
    return a * b // math.gcd(a, b)
