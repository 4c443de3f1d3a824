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
from darkroom.core.sizes import MIN_EDGE, fitted, format_size, producible, ratio_name
from darkroom.engine.base import StyleHint
from darkroom.engine.upstream import UpstreamEntry
from darkroom.engine.weights import WeightsEntry

PROVIDERS = ("openai", "gemini", "seedream")

MAX_PROMPT_CHARS = 4000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SizeRule(_Strict):
    """The exact sizes a model takes (the OpenAI dialect's ``size``), beyond sides that are
    multiples of 16: at most ``max_edge`` pixels a side, ``max_pixels`` in all, and the long
    side at most ``max_aspect`` times the short."""

    max_edge: int = Field(ge=MIN_EDGE)
    max_pixels: int = Field(ge=MIN_EDGE * MIN_EDGE)
    max_aspect: float = Field(ge=1)


class ModelEntry(_Strict):
    title: str
    # The published "from" price: credits per image at the lowest resolution.
    credits_per_image: int = Field(ge=0)
    # Credits per image at each resolution, where the price is not credits_per_image times the
    # catalog's price_multipliers.
    prices: dict[str, int] | None = None
    resolutions: tuple[str, ...] = Field(min_length=1)
    tiers: tuple[str, ...] = Field(min_length=1)
    image_counts: tuple[int, ...] = Field(min_length=1)
    backend: str = "preview"
    # Whether the model makes images from a prompt alone (the image generator); false: it only
    # edits.
    generates: bool = True
    # Whether the model can edit source images (the image editor, OpenAI's images.edit), and how
    # many it takes at most in one edit (the image to edit and the references).
    edits: bool = False
    max_input_images: int = Field(default=1, ge=1, le=16)
    # The exact sizes the OpenAI dialect may ask of it; None: any size up to its largest
    # resolution.
    exact_sizes: SizeRule | None = None
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
    default_edit_model: str
    model_aliases: dict[str, str] = Field(default_factory=dict)
    quality_modes: dict[str, str] = Field(default_factory=dict)
    orientations: dict[str, str] = Field(default_factory=dict)
    edit_style_models: dict[str, str] = Field(default_factory=dict)
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

        need(
            self.default_model in self.models and self.models[self.default_model].generates,
            f"default_model {self.default_model!r} unknown or not a generator",
        )
        need(
            self.default_edit_model in self.models and self.models[self.default_edit_model].edits,
            f"default_edit_model {self.default_edit_model!r} unknown or cannot edit",
        )
        for key, target in self.edit_style_models.items():
            need(
                target in self.models and self.models[target].edits,
                f"edit_style_models: {key!r} points at {target!r}, unknown or cannot edit",
            )
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
            need(model.generates or model.edits, f"model {name!r} neither generates nor edits")
            if model.prices is not None:
                need(
                    set(model.prices) == set(model.resolutions)
                    and all(price >= 0 for price in model.prices.values()),
                    f"model {name!r}: prices must give every one of its resolutions",
                )
                lowest = self.resolution_order(
                    [r for r in model.resolutions if r in self.resolutions]
                )[:1]
                need(
                    not lowest or model.prices.get(lowest[0]) == model.credits_per_image,
                    f"model {name!r}: credits_per_image must be its price at its lowest resolution",
                )
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

    def price_per_image(self, model: str, resolution: str) -> int:
        """The credits one image of ``model`` costs at ``resolution``."""
        entry = self.models[model]
        if entry.prices is not None and resolution in entry.prices:
            return entry.prices[resolution]
        return entry.credits_per_image * self.price_multipliers[resolution]

    def price(self, model: str, resolution: str, count: int) -> int:
        return self.price_per_image(model, resolution) * count

    def generators(self) -> list[str]:
        """The models the image generator serves."""
        return [name for name, entry in self.models.items() if entry.generates]

    def editors(self) -> list[str]:
        """The models that edit images."""
        return [name for name, entry in self.models.items() if entry.edits]

    def resolve_model(
        self, requested: str | None, quality_mode: str | None = None, *, edit: bool = False
    ) -> str:
        """The catalog model a request names (``default``, an alias, or a deprecated field):
        for an edit the editor's default."""
        # A deprecated field is checked even where a newer one wins over it: a typo is a 400.
        if quality_mode is not None and quality_mode not in self.quality_modes:
            raise InvalidRequest(
                f"style.quality_mode must be one of {listing(self.quality_modes)}",
                field="style.quality_mode",
            )
        if requested is None and quality_mode is not None:
            return self.quality_modes[quality_mode]
        if requested is None or requested == "default":
            return self.default_edit_model if edit else self.default_model
        name = self.model_aliases.get(requested, requested)
        if name not in self.models:
            served = self.editors() if edit else self.generators()
            raise InvalidRequest(
                f"model {requested!r} is not served here; choose one of "
                f"{listing(['default', *served])}",
                field="model",
            )
        return name

    def edit_style_model(self, style_model: str | None) -> str | None:
        """The model the editor's deprecated ``style.model`` names (None: none, or
        ``default``)."""
        if style_model is None or style_model == "default":
            return None
        if style_model not in self.edit_style_models:
            raise InvalidRequest(
                f"style.model must be one of {listing(['default', *self.edit_style_models])}",
                field="style.model",
            )
        return self.edit_style_models[style_model]

    def check_inputs(
        self,
        model_name: str,
        count: int,
        *,
        limit: int | None = None,
        field: str = "image",
        label: str | None = None,
    ) -> None:
        """Refuse an edit with more input images than the model takes (``limit``: what the
        name the caller used allows instead; ``label``: that name, for the message)."""
        most = limit or self.models[model_name].max_input_images
        if count > most:
            raise InvalidRequest(
                f"model {label or repr(model_name)} takes at most {most} input "
                f"{'image' if most == 1 else 'images'} in one edit; {count} were sent "
                "(nothing was charged)",
                field=field,
            )

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
        model_name = self.resolve_model(spec.model, spec.quality_mode, edit=spec.edit)
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
            raise InvalidRequest(
                f"model {label} cannot edit images; models that can: {listing(self.editors())}",
                field="model",
            )
        if not spec.edit and not model.generates:
            raise InvalidRequest(
                f"model {label} only edits images: send it the images to edit "
                "(POST /v1/ai-image-editor, or images.edit); models that generate: "
                f"{listing(self.generators())}",
                field="model",
            )
        if spec.edit:
            self.check_inputs(
                model_name,
                spec.source_count,
                limit=spec.max_inputs,
                field=spec.fields.images,
                label=label,
            )
        if spec.size is not None:
            width, height = spec.size
            ratio, resolution = self._exact_size(width, height, model_name, label, tier)
        elif spec.aspect_ratio == "auto" and spec.follow is not None:
            resolution = self._resolution(spec.resolution, model_name, tier)
            width, height = fitted(*spec.follow, self.resolutions[resolution])
            ratio = self._ratio_of(width, height, resolution)
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
        rule = model.exact_sizes
        if rule is not None:
            long, short = max(width, height), min(width, height)
            if long > rule.max_edge or width * height > rule.max_pixels:
                raise InvalidRequest(
                    f"model {label} cannot produce {size}: at most {rule.max_edge} pixels a "
                    f"side and {rule.max_pixels} pixels in all",
                    field="size",
                )
            if long > short * rule.max_aspect:
                raise InvalidRequest(
                    f"model {label} cannot produce {size}: its aspect ratio must be between "
                    f"1:{rule.max_aspect:g} and {rule.max_aspect:g}:1",
                    field="size",
                )
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
        return self._ratio_of(width, height, resolution), resolution

    def _ratio_of(self, width: int, height: int, resolution: str) -> str:
        """The catalog's name for the size's aspect ratio, else its reduced ``W:H``."""
        return next(
            (
                name
                for name, table in self.sizes.items()
                if table.get(resolution) == (width, height)
            ),
            ratio_name(width, height),
        )

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
    images: str = "assets.image_file_paths"


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
    source_count: int = 0  # how many (the image to edit and the references)
    max_inputs: int | None = None  # the most the name the caller used takes (None: the model's)
    # aspect_ratio "auto" (the editor's): the first source's size, whose shape the images take
    follow: tuple[int, int] | None = None
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
