"""The catalog: models, tiers, prices, sizes and style tools, loaded from data and validated once.

``Catalog.load()`` reads the TOML shipped with the package and merges an operator's override file
over it; :meth:`Catalog.plan` turns what a caller asked for (:class:`ImageSpec`) into what will be
rendered and charged (:class:`PricedRender`), raising domain errors for anything it cannot serve.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from darkroom.core import openai_models
from darkroom.core.errors import InvalidRequest, TierForbidden, listing
from darkroom.core.openai_models import OpenAISection
from darkroom.core.sizes import MIN_EDGE, format_size, producible, ratio_name
from darkroom.engine.base import StyleHint
from darkroom.engine.upstream import UpstreamEntry
from darkroom.engine.weights import WeightsEntry

PROVIDERS = ("openai", "gemini", "seedream")

MAX_PROMPT_CHARS = 4000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelEntry(_Strict):
    title: str
    credits_per_image: int = Field(ge=0)
    resolutions: tuple[str, ...] = Field(min_length=1)
    tiers: tuple[str, ...] = Field(min_length=1)
    image_counts: tuple[int, ...] = Field(min_length=1)
    backend: str = "preview"
    # Whether the model can edit source images (OpenAI's images.edit).
    edits: bool = False
    # The weights that the diffusers backend loads (for backend = "diffusers").
    weights: WeightsEntry | None = None
    # Where a provider backend (openai, gemini, seedream) sends the model's requests.
    upstream: UpstreamEntry | None = None
    # Set by the server, not the catalog file: why this server cannot render the model (its
    # backend cannot serve it: an upstream key that is not set...). It is refused before any
    # charge, and shown so in /v1/models.
    unavailable: str | None = None


class TierEntry(_Strict):
    resolutions: tuple[str, ...] = Field(min_length=1)


class ToolEntry(_Strict):
    template: str
    palette: tuple[str, ...] = ()
    composition: str = "scatter"


class Catalog(_Strict):
    default_model: str
    model_aliases: dict[str, str] = Field(default_factory=dict)
    quality_modes: dict[str, str] = Field(default_factory=dict)
    orientations: dict[str, str] = Field(default_factory=dict)
    default_aspect_ratio: str
    default_tool: str
    resolutions: dict[str, int]
    price_multipliers: dict[str, int]
    sizes: dict[str, dict[str, tuple[int, int]]]
    tiers: dict[str, TierEntry]
    models: dict[str, ModelEntry]
    tools: dict[str, ToolEntry]
    openai: OpenAISection

    @model_validator(mode="after")
    def _consistent(self) -> Catalog:
        problems: list[str] = []

        def need(ok: bool, what: str) -> None:
            if not ok:
                problems.append(what)

        need(self.default_model in self.models, f"default_model {self.default_model!r} unknown")
        need(self.default_aspect_ratio in self.sizes, "default_aspect_ratio has no sizes")
        need(self.default_tool in self.tools, f"default_tool {self.default_tool!r} unknown")
        for aliases in (self.model_aliases, self.quality_modes):
            for key, target in aliases.items():
                need(target in self.models, f"{key!r} points at unknown model {target!r}")
        for key, ratio in self.orientations.items():
            need(ratio in self.sizes, f"orientation {key!r} points at unknown ratio {ratio!r}")
        need(
            set(self.price_multipliers) == set(self.resolutions), "price_multipliers ≠ resolutions"
        )
        for ratio, table in self.sizes.items():
            need(
                set(table) == set(self.resolutions), f"sizes[{ratio!r}] must list every resolution"
            )
            for res, (w, h) in table.items():
                need(
                    max(w, h) <= self.resolutions.get(res, 0) and w % 16 == 0 and h % 16 == 0,
                    f"sizes[{ratio!r}][{res!r}] = {w}x{h} exceeds its resolution or is not /16",
                )
        for name, tier in self.tiers.items():
            for res in tier.resolutions:
                need(res in self.resolutions, f"tier {name!r}: unknown resolution {res!r}")
        for name, model in self.models.items():
            for res in model.resolutions:
                need(res in self.resolutions, f"model {name!r}: unknown resolution {res!r}")
            for tier_name in model.tiers:
                need(tier_name in self.tiers, f"model {name!r}: unknown tier {tier_name!r}")
            need(all(n >= 1 for n in model.image_counts), f"model {name!r}: image_counts < 1")
            need(
                model.backend != "diffusers" or model.weights is not None,
                f"model {name!r}: the diffusers backend needs a [models.{name}.weights] table",
            )
            need(
                model.backend not in PROVIDERS or model.upstream is not None,
                f"model {name!r}: the {model.backend} backend needs an upstream table",
            )
        for name, tool in self.tools.items():
            need("{prompt}" in tool.template, f"tool {name!r}: template lacks {{prompt}}")
        problems.extend(openai_models.problems(self))
        if problems:
            raise ValueError("invalid catalog: " + "; ".join(problems))
        return self

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def load(cls, override: Path | None = None) -> Catalog:
        """The shipped catalog, with ``override`` (an operator's TOML file) merged over it."""
        data = tomllib.loads(resources.files("darkroom.data").joinpath("catalog.toml").read_text())
        if override is not None:
            try:
                extra = tomllib.loads(override.read_text())
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ValueError(f"cannot read catalog override {override}: {exc}") from exc
            data = _merge(data, extra)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ValueError(f"invalid catalog: {exc}") from exc

    # -- questions a request asks --------------------------------------------------------------

    def resolution_order(self, names: tuple[str, ...] | list[str]) -> list[str]:
        return sorted(names, key=lambda r: self.resolutions[r])

    def price(self, model: str, resolution: str, count: int) -> int:
        entry = self.models[model]
        return entry.credits_per_image * self.price_multipliers[resolution] * count

    def resolve_model(self, requested: str | None, quality_mode: str | None = None) -> str:
        # A deprecated field is checked even where a newer one wins over it: a typo is a 400.
        if quality_mode is not None and quality_mode not in self.quality_modes:
            raise InvalidRequest(
                f"style.quality_mode must be one of {listing(self.quality_modes)}",
                field="style.quality_mode",
            )
        if requested is None and quality_mode is not None:
            return self.quality_modes[quality_mode]
        if requested is None or requested == "default":
            return self.default_model
        name = self.model_aliases.get(requested, requested)
        if name not in self.models:
            raise InvalidRequest(
                f"model {requested!r} is not served here; choose one of "
                f"{listing(['default', *self.models])}",
                field="model",
            )
        return name

    def plan(self, spec: ImageSpec, tier: str) -> PricedRender:
        """Decide model, size, price and prompt for ``spec`` on ``tier``, or raise why not."""
        prompt = spec.prompt.strip()
        field = spec.fields.prompt
        if not prompt:
            raise InvalidRequest(f"{field} must not be empty", field=field)
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InvalidRequest(
                f"{field} is longer than {MAX_PROMPT_CHARS} characters", field=field
            )
        model_name = self.resolve_model(spec.model, spec.quality_mode)
        model = self.models[model_name]
        label = _label(spec.model_label, model_name)
        if tier not in model.tiers:
            raise TierForbidden(
                f"model {label} is not available on the {tier} tier "
                f"(available for: {', '.join(model.tiers)})"
            )
        if model.unavailable is not None:
            raise InvalidRequest(
                f"model {label} is not available on this server ({model.unavailable}); "
                "nothing was charged",
                field="model",
            )
        counts = spec.image_counts or model.image_counts
        if spec.image_count not in counts:
            raise InvalidRequest(
                f"{spec.fields.image_count} {spec.image_count} is not allowed for model {label}; "
                f"allowed: {_span(counts)}",
                field=spec.fields.image_count,
            )
        if spec.edit and not model.edits:
            editors = [name for name, entry in self.models.items() if entry.edits]
            raise InvalidRequest(
                f"model {label} cannot edit images; models that can: {listing(editors)}",
                field="model",
            )
        if spec.size is not None:
            width, height = spec.size
            ratio, resolution = self._exact_size(width, height, model_name, label, tier)
        else:
            ratio = self._aspect_ratio(spec)
            resolution = self._resolution(spec.resolution, model_name, tier)
            width, height = self.sizes[ratio][resolution]
        tool_name = spec.tool or self.default_tool
        if tool_name not in self.tools:
            raise InvalidRequest(
                f"{spec.fields.tool} {tool_name!r} is unknown; choose one of {listing(self.tools)}",
                field=spec.fields.tool,
            )
        final_prompt = self.tools[tool_name].template.replace("{prompt}", prompt)
        if spec.prompt_template is not None:
            final_prompt = spec.prompt_template.replace("{prompt}", final_prompt)
        return PricedRender(
            model=model_name,
            backend=model.backend,
            resolution=resolution,
            aspect_ratio=ratio,
            width=width,
            height=height,
            image_count=spec.image_count,
            credits=self.price(model_name, resolution, spec.image_count),
            tool=tool_name,
            prompt=prompt,
            final_prompt=final_prompt,
            style=self.style_hint(tool_name),
        )

    def style_hint(self, tool_name: str) -> StyleHint:
        """What the backend learns of a style tool (the default tool's if it left the catalog)."""
        tool = self.tools.get(tool_name) or self.tools[self.default_tool]
        return StyleHint(tool=tool_name, palette=tool.palette, composition=tool.composition)

    def _exact_size(
        self, width: int, height: int, model_name: str, label: str, tier: str
    ) -> tuple[str, str]:
        """The aspect ratio name and the resolution (priced and tier-gated) of an exact size."""
        size = format_size(width, height)
        if not producible(width, height):
            raise InvalidRequest(
                f"size {size} cannot be produced: both sides must be multiples of 16 and at "
                f"least {MIN_EDGE} pixels",
                field="size",
            )
        model = self.models[model_name]
        fitting = [
            r
            for r in self.resolution_order(model.resolutions)
            if self.resolutions[r] >= max(width, height)
        ]
        if not fitting:
            largest = max(self.resolutions[r] for r in model.resolutions)
            raise InvalidRequest(
                f"model {label} cannot produce {size}: its images are at most {largest} pixels "
                "on the longest side",
                field="size",
            )
        resolution = fitting[0]
        self._require_tier(resolution, tier, f"size {size} (a {resolution} image)")
        ratio = next(
            (
                name
                for name, table in self.sizes.items()
                if table.get(resolution) == (width, height)
            ),
            ratio_name(width, height),
        )
        return ratio, resolution

    def _aspect_ratio(self, spec: ImageSpec) -> str:
        if spec.orientation is not None and spec.orientation not in self.orientations:
            raise InvalidRequest(
                f"orientation must be one of {listing(self.orientations)}", field="orientation"
            )
        if spec.aspect_ratio is not None:
            if spec.aspect_ratio not in self.sizes:
                raise InvalidRequest(
                    f"aspect_ratio must be one of {listing(self.sizes)}", field="aspect_ratio"
                )
            return spec.aspect_ratio
        if spec.orientation is not None:
            return self.orientations[spec.orientation]
        return self.default_aspect_ratio

    def _resolution(self, requested: str | None, model_name: str, tier: str) -> str:
        model = self.models[model_name]
        allowed_by_tier = self.tiers[tier].resolutions
        if requested is None or requested == "auto":
            both = [r for r in model.resolutions if r in allowed_by_tier]
            if not both:
                raise TierForbidden(
                    f"no resolution of model {model_name!r} is available on the {tier} tier"
                )
            return self.resolution_order(both)[-1]
        if requested not in self.resolutions:
            raise InvalidRequest(
                f"resolution must be one of {listing(['auto', *self.resolutions])}",
                field="resolution",
            )
        if requested not in model.resolutions:
            raise InvalidRequest(
                f"model {model_name!r} does not support resolution {requested!r}; "
                f"supported: {', '.join(model.resolutions)}",
                field="resolution",
            )
        self._require_tier(requested, tier, f"resolution {requested!r}")
        return requested

    def _require_tier(self, resolution: str, tier: str, subject: str) -> None:
        """Raise TierForbidden, naming the tiers that have it, unless ``tier`` has
        ``resolution``."""
        if resolution not in self.tiers[tier].resolutions:
            tiers = [name for name, t in self.tiers.items() if resolution in t.resolutions]
            raise TierForbidden(
                f"{subject} is not available on the {tier} tier (available for: {', '.join(tiers)})"
            )


@dataclass(frozen=True)
class FieldNames:
    """How a dialect names the request fields that error messages point at."""

    prompt: str = "style.prompt"
    image_count: str = "image_count"
    tool: str = "style.tool"


@dataclass(frozen=True)
class ImageSpec:
    """What a caller asked for, after its HTTP dialect parsed the request."""

    prompt: str
    image_count: int
    model: str | None = None
    aspect_ratio: str | None = None
    orientation: str | None = None
    quality_mode: str | None = None
    resolution: str | None = None
    tool: str | None = None
    # The OpenAI dialect's additions.
    size: tuple[int, int] | None = None  # an exact pixel size, instead of ratio x resolution
    model_label: str | None = None  # the model name the caller used, for messages
    image_counts: tuple[int, ...] | None = None  # instead of the model's own
    prompt_template: str | None = None  # applied after the tool's template ({prompt})
    edit: bool = False  # source images come with the request
    fields: FieldNames = FieldNames()


@dataclass(frozen=True)
class PricedRender:
    """What will be rendered and charged for one project."""

    model: str
    backend: str
    resolution: str
    aspect_ratio: str
    width: int
    height: int
    image_count: int
    credits: int
    tool: str
    prompt: str
    final_prompt: str
    style: StyleHint


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _label(requested: str | None, model_name: str) -> str:
    if requested is None or requested == model_name:
        return repr(model_name)
    return f"{requested!r} (served by {model_name!r})"


def _span(counts: tuple[int, ...]) -> str:
    if len(counts) > 4 and counts == tuple(range(counts[0], counts[-1] + 1)):
        return f"{counts[0]} to {counts[-1]}"
    return ", ".join(map(str, counts))
