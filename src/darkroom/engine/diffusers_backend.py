"""The diffusers backend: open-weight models (FLUX.1-schnell, Z-Image-Turbo, SDXL-Turbo, ...)
rendered by Hugging Face diffusers, on a GPU where there is one.

Which weights serve each model is catalog data (:class:`~darkroom.engine.weights.WeightsEntry`: a
hub id or a local directory, dtype, steps, guidance). A pipeline is loaded with the real
``DiffusionPipeline.from_pretrained`` on its model's first job and stays resident; the job's
status says so meanwhile (``rendering``, "loading weights"). Weights that cannot be found or read
end the job in ``error`` with a stable code (the runner refunds it), never in a hang.

One job at a time runs on the device (the pipelines share it); a project's images are rendered
as one batch of up to ``max_batch``, image ``i`` from its own generator seeded ``seed + i``, so
an image depends on its seed only, not on the batch it was part of.

torch and diffusers are imported on first use: a server whose models all run on the preview
backend never loads them.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from darkroom.engine import devices
from darkroom.engine.base import BackendError, RenderRequest, StyleHint
from darkroom.engine.weights import WeightsEntry

log = logging.getLogger("darkroom.diffusers")

Report = Callable[[str | None], None]


def _nothing(_: str | None) -> None:
    return None


class DiffusersBackend:
    name = "diffusers"
    edits = False

    def __init__(
        self,
        weights: Mapping[str, WeightsEntry],
        *,
        device: str = "auto",
        dtype: str = "auto",
        optimize: bool = True,
        warmup_sizes: Mapping[str, list[tuple[int, int]]] | None = None,
    ) -> None:
        self.weights = dict(weights)
        self.device_setting = device
        self.dtype_setting = dtype
        self.optimize = optimize
        self.warmup_sizes = dict(warmup_sizes or {})
        self._pipelines: dict[str, Any] = {}
        self.optimizations: dict[str, list[str]] = {}  # model -> what was applied
        self._device_lock = threading.Lock()  # one job at a time on the device

    def loaded(self) -> list[str]:
        return sorted(self._pipelines)

    def render(self, request: RenderRequest) -> list[bytes]:
        entry = self.weights.get(request.model)
        if entry is None:
            raise BackendError(
                "model_not_configured", f"no weights are configured for {request.model!r}"
            )
        report = request.report or _nothing
        with self._device_lock:
            pipeline = self._pipeline(request.model, entry, report)
            images = generate(pipeline, entry, request)
        return [_png(image) for image in images]

    def _pipeline(self, model: str, entry: WeightsEntry, report: Report) -> Any:
        pipeline = self._pipelines.get(model)
        if pipeline is not None:
            return pipeline
        device = devices.choose_device(self.device_setting)
        dtype = devices.choose_dtype(
            entry.dtype if entry.dtype != "auto" else self.dtype_setting, device
        )
        report(f"loading the {model} weights")
        log.info("loading %s from %s on %s (%s)", model, entry.source, device, dtype)
        started = time.perf_counter()
        pipeline = load_pipeline(model, entry, device, dtype)
        applied: list[str] = []
        if self.optimize and device.startswith("cuda"):
            report(f"optimizing {model} for {device}")
            applied = devices.optimize(pipeline)
            for width, height in self.warmup_sizes.get(model, []):
                generate(pipeline, entry, warmup_request(model, width, height))
        self.optimizations[model] = applied
        log.info(
            "loaded %s in %.1f s%s",
            model,
            time.perf_counter() - started,
            f" ({', '.join(applied)})" if applied else "",
        )
        report(None)
        self._pipelines[model] = pipeline
        return pipeline


def load_pipeline(model: str, entry: WeightsEntry, device: str, dtype: Any) -> Any:
    """``DiffusionPipeline.from_pretrained`` on the hub id or local directory, moved to the
    device; a :class:`BackendError` naming what is wrong when it cannot be loaded."""
    try:
        from diffusers import DiffusionPipeline
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging
    except ImportError:
        raise BackendError(
            "backend_unavailable",
            "the diffusers backend needs torch, diffusers and transformers: "
            "pip install 'darkroom[diffusers]'",
        ) from None
    local = _local_path(entry.source)
    if local is not None and not (local / "model_index.json").is_file():
        raise BackendError(
            "weights_not_found",
            f"the weights of {model} are not at {local} (no model_index.json there)",
        )
    # Loading progress bars are for terminals; the server logs one line per load instead.
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        pipeline = DiffusionPipeline.from_pretrained(  # type: ignore[no-untyped-call]
            str(local) if local is not None else entry.source,
            dtype=dtype,
            revision=entry.revision,
            local_files_only=local is not None,
        )
    except OSError as exc:  # the hub's "not found" and "offline"; a local file unreadable
        code = "weights_invalid" if local is not None else "weights_not_found"
        raise BackendError(
            code,
            f"the weights of {model} could not be loaded from {entry.source}: {_first_line(exc)}",
        ) from None
    except Exception as exc:  # a broken directory: bad JSON, missing parts, wrong shapes
        log.exception("loading %s from %s failed", model, entry.source)
        raise BackendError(
            "weights_invalid",
            f"the weights of {model} at {entry.source} are unusable: "
            f"{type(exc).__name__}: {_first_line(exc)}",
        ) from None
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)


def generate(pipeline: Any, entry: WeightsEntry, request: RenderRequest) -> list[Any]:
    """The request's images (PIL), in batches of ``entry.max_batch``."""
    import torch

    kwargs: dict[str, Any] = {
        "prompt": request.prompt,
        "width": request.width,
        "height": request.height,
        "num_inference_steps": entry.steps,
        "guidance_scale": entry.guidance,
        "output_type": "pil",
    }
    if entry.max_sequence_length is not None and devices.accepts(pipeline, "max_sequence_length"):
        kwargs["max_sequence_length"] = entry.max_sequence_length
    if request.canceled is not None and devices.accepts(pipeline, "callback_on_step_end"):
        kwargs["callback_on_step_end"] = _stop_if_canceled(request)
    count, seed = request.count, request.seed
    images: list[Any] = []
    for start in range(0, count, entry.max_batch):
        request.check_canceled()
        size = min(entry.max_batch, count - start)
        # CPU generators: the same seed gives the same noise on any device.
        generators = [torch.Generator("cpu").manual_seed(seed + start + i) for i in range(size)]
        with torch.inference_mode():
            output = pipeline(**kwargs, num_images_per_prompt=size, generator=generators)
        images.extend(output.images)
    if len(images) != count:
        raise BackendError("backend_error", f"the pipeline made {len(images)} of {count} images")
    return images


def _stop_if_canceled(request: RenderRequest) -> Callable[..., dict[str, Any]]:
    """A diffusers step-end callback that stops the denoising loop of a canceled project."""

    def callback(
        _pipeline: Any, _step: int, _timestep: Any, _tensors: dict[str, Any]
    ) -> dict[str, Any]:
        request.check_canceled()
        return {}

    return callback


def warmup_request(model: str, width: int, height: int) -> RenderRequest:
    """One image of one size, run once after loading so that compilation happens then."""
    return RenderRequest(
        project_id="warm-up",
        model=model,
        prompt="warm-up",
        user_prompt="warm-up",
        style=StyleHint("general", (), "scatter"),
        width=width,
        height=height,
        count=1,
        seed=0,
    )


def weights_status(entry: WeightsEntry) -> dict[str, Any]:
    """Whether the weights can be loaded here, without loading them (for model listings)."""
    local = _local_path(entry.source)
    if local is not None:
        found = (local / "model_index.json").is_file()
        detail = "local directory" if found else f"no model_index.json in {local}"
        return {"source": entry.source, "local": True, "loadable": found, "detail": detail}
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return {
            "source": entry.source,
            "local": False,
            "loadable": False,
            "detail": "diffusers is not installed",
        }
    cached = try_to_load_from_cache(entry.source, "model_index.json", revision=entry.revision)
    if isinstance(cached, str):
        return {
            "source": entry.source,
            "local": False,
            "loadable": True,
            "detail": "in the Hugging Face cache",
        }
    return {
        "source": entry.source,
        "local": False,
        "loadable": False,
        "detail": "not in the Hugging Face cache: downloaded on first use if the hub is reachable",
    }


def _local_path(source: str) -> Path | None:
    """The directory a source names, or None for a hub id ("owner/name")."""
    path = Path(source).expanduser()
    if source.startswith(("/", ".", "~")) or path.exists() or source.count("/") != 1:
        return path
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
