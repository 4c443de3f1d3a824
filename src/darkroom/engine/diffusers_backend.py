"""The diffusers backend: open-weight models (FLUX.2 [klein], FLUX.1, Z-Image, Qwen-Image-Edit,
Qwen-Image 2.1, Krea 2, SDXL...) rendered by Hugging Face diffusers, on a GPU where there is one.

Which weights serve each model is catalog data (:class:`~darkroom.engine.weights.WeightsEntry`: a
hub id or a local directory, its family, optionally steps, guidance and more). How a model
family loads, what it can do and how a request becomes its pipeline calls is its module's
(``engine/families/``). This module holds what they share: finding the weights, checking they
are the family's before anything is loaded (model_index.json's ``_class_name``), loading them on
a model's first job and keeping them resident (the job's status says "loading the weights"
meanwhile), the GPU optimizations and warm-up, and one job at a time on the device. Weights that
cannot be found, are another family's, or cannot be read end the job in ``error`` with a stable
code (the runner refunds it), never in a hang.

torch and diffusers are imported on first use: a server whose models all run on the preview
backend never loads them.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from darkroom.engine import devices
from darkroom.engine.base import BackendError, RenderRequest, StyleHint
from darkroom.engine.families import Capabilities, Family, by_name, for_pipeline_class
from darkroom.engine.weights import WeightsEntry

log = logging.getLogger("darkroom.diffusers")

Report = Callable[[str | None], None]


def _nothing(_: str | None) -> None:
    return None


class DiffusersBackend:
    name = "diffusers"
    # Edits are per model: its family says whether it takes sources and a mask, and a request it
    # cannot serve ends with a stable code (the API refuses it before any charge).
    edits = True

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
        self._models: dict[str, Family] = {}
        self.optimizations: dict[str, list[str]] = {}  # model -> what was applied
        self._device_lock = threading.Lock()  # one job at a time on the device

    def loaded(self) -> list[str]:
        return sorted(self._models)

    def render(self, request: RenderRequest) -> list[bytes]:
        entry = self.weights.get(request.model)
        if entry is None:
            raise BackendError(
                "model_not_configured", f"no weights are configured for {request.model!r}"
            )
        report = request.report or _nothing
        with self._device_lock:
            family = self.family(request.model, entry, report)
            images = family.render(request, family.settings(entry))
        return [_png(image) for image in images]

    def family(self, model: str, entry: WeightsEntry, report: Report = _nothing) -> Family:
        """The model's loaded family (its pipelines), loading it on first use."""
        family = self._models.get(model)
        if family is not None:
            return family
        device = devices.choose_device(self.device_setting)
        dtype = devices.choose_dtype(
            entry.dtype if entry.dtype != "auto" else self.dtype_setting, device
        )
        report(f"loading the {model} weights")
        log.info("loading %s from %s on %s (%s)", model, entry.source, device, dtype)
        started = time.perf_counter()
        family = load_family(model, entry, device, dtype)
        applied: list[str] = []
        if self.optimize and device.startswith("cuda"):
            report(f"optimizing {model} for {device}")
            applied = devices.optimize(family.pipeline)
            if family.capabilities.generate:
                settings = family.settings(entry)
                for width, height in self.warmup_sizes.get(model, []):
                    family.render(warmup_request(model, width, height), settings)
        self.optimizations[model] = applied
        log.info(
            "loaded %s (%s) in %.1f s%s",
            model,
            family.title,
            time.perf_counter() - started,
            f" ({', '.join(applied)})" if applied else "",
        )
        report(None)
        self._models[model] = family
        return family

    def adopt(self, model: str, family: Family) -> None:
        """Serve ``model`` with an already loaded family (benchmarks build full-size pipelines
        with random weights: there is nothing to load)."""
        self._models[model] = family
        self.optimizations.setdefault(model, [])


def load_family(model: str, entry: WeightsEntry, device: str, dtype: Any) -> Family:
    """The model's family with its weights loaded on the device; a :class:`BackendError` naming
    what is wrong when they cannot be found, are another family's, or cannot be read."""
    try:
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging
    except ImportError:
        raise BackendError(
            "backend_unavailable",
            "the diffusers backend needs torch, diffusers and transformers: "
            "pip install 'darkroom[diffusers]'",
        ) from None
    # Loading progress bars are for terminals; the server logs one line per load instead.
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    directory = locate(model, entry)
    family = family_for(model, entry, pipeline_class(model, entry, directory))
    try:
        loaded = family.load(directory, dtype)
    except BackendError:
        raise
    except OSError as exc:  # a file that is missing or unreadable
        raise BackendError(
            "weights_invalid",
            f"the weights of {model} could not be loaded from {entry.source}: {_first_line(exc)}",
        ) from None
    except Exception as exc:  # a broken directory: bad JSON, missing parts, wrong shapes
        log.exception("loading %s from %s failed", model, entry.source)
        raise BackendError(
            "weights_invalid",
            f"the weights of {model} at {entry.source} are unusable: "
            f"{type(exc).__name__}: {_first_line(exc)}",
        ) from None
    return loaded.to(device)


def locate(model: str, entry: WeightsEntry) -> Path:
    """The local directory of the weights: the one named, or the hub repository's snapshot
    (downloaded into the Hugging Face cache unless it is there already)."""
    local = _local_path(entry.source)
    if local is not None:
        if not (local / "model_index.json").is_file():
            raise BackendError(
                "weights_not_found",
                f"the weights of {model} are not at {local} (no model_index.json there)",
            )
        return local
    from diffusers import DiffusionPipeline

    try:
        folder = DiffusionPipeline.download(entry.source, revision=entry.revision)
    except OSError as exc:  # the hub's "not found" and "offline"
        raise BackendError(
            "weights_not_found",
            f"the weights of {model} could not be loaded from {entry.source}: {_first_line(exc)}",
        ) from None
    return Path(folder)


def pipeline_class(model: str, entry: WeightsEntry, directory: Path) -> str:
    """The pipeline class the weights were saved as (model_index.json's ``_class_name``)."""
    try:
        index = json.loads((directory / "model_index.json").read_text())
        name = index["_class_name"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackendError(
            "weights_invalid",
            f"the weights of {model} at {entry.source} have no readable model_index.json "
            f"({type(exc).__name__})",
        ) from None
    if not isinstance(name, str):
        raise BackendError(
            "weights_invalid", f"the model_index.json of {model} names no pipeline class"
        )
    return name


def family_for(model: str, entry: WeightsEntry, class_name: str) -> type[Family]:
    """The model's family: the one its weights table names, which must load ``class_name``
    weights; or, when it names none, the one that does."""
    found = for_pipeline_class(class_name)
    if entry.family is None:
        if found is None:
            raise BackendError(
                "weights_unsupported",
                f"the weights of {model} at {entry.source} are a {class_name}, which no model "
                "family of this server loads",
            )
        return found
    family = by_name(entry.family)
    if class_name not in family.pipeline_classes:
        what = f"{found.title} weights" if found is not None else "weights of another kind"
        raise BackendError(
            "weights_wrong_family",
            f"the weights of {model} at {entry.source} are {what} ({class_name}), "
            f"not {family.title} weights ({', '.join(family.pipeline_classes)})",
        )
    return family


def known_family(entry: WeightsEntry) -> type[Family] | None:
    """The family of a model without loading anything: the one its weights table names, or
    the one of a local directory's model_index.json; None when neither says."""
    if entry.family is not None:
        return by_name(entry.family)
    local = _local_path(entry.source)
    if local is None:
        return None
    try:
        return for_pipeline_class(pipeline_class("", entry, local))
    except BackendError:
        return None


def model_capabilities(entry: WeightsEntry) -> Capabilities | None:
    """What a model served from ``entry`` can do, without loading it; None when its family
    cannot be known yet (a hub id whose weights table names no family)."""
    family = known_family(entry)
    return None if family is None else family.capabilities_for(entry)


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
        if found:
            try:
                family_for("", entry, pipeline_class("", entry, local))
            except BackendError as exc:
                found, detail = False, exc.message
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
        try:  # the cached snapshot's family, checked as a local directory's is
            family_for("", entry, pipeline_class("", entry, Path(cached).parent))
        except BackendError as exc:
            return {
                "source": entry.source,
                "local": False,
                "loadable": False,
                "detail": exc.message,
            }
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
