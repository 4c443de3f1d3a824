"""The OpenAI dialect's names in the catalog: OpenAI model names (``dall-e-2``, ``dall-e-3``,
``gpt-image-1``) mapped to catalog models, its sizes, qualities and styles.

The ``[openai]`` table of ``catalog.toml`` holds the data; these functions turn a request's
``model``, ``quality``, ``size`` and ``style`` into what :meth:`Catalog.plan` takes
(:meth:`OpenAIImages.spec`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from darkroom.core.errors import InvalidRequest, listing
from darkroom.core.sizes import parse_size

if TYPE_CHECKING:
    from darkroom.core.catalog import Catalog, ImageSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OpenAIAlias(_Strict):
    """An OpenAI model name and the catalog model that serves it."""

    model: str
    sizes: tuple[str, ...] = ()  # the sizes OpenAI documents for it; empty: any size the model has
    max_n: int = Field(default=10, ge=1, le=16)
    quality: dict[str, str] = Field(default_factory=dict)  # quality -> a better catalog model
    # The most images an edit may send under this name (None: the catalog model's own limit).
    max_images: int | None = Field(default=None, ge=1, le=16)


class OpenAISection(_Strict):
    default_model: str
    default_size: str
    best_qualities: tuple[str, ...] = ()
    qualities: tuple[str, ...] = ()
    styles: dict[str, str] = Field(default_factory=dict)
    aliases: dict[str, OpenAIAlias] = Field(default_factory=dict)


@dataclass(frozen=True)
class ModelChoice:
    """What an OpenAI-dialect ``model`` (and ``quality``) selects."""

    label: str  # the name the caller used
    model: str  # the catalog model
    sizes: tuple[str, ...]  # the sizes the name allows; empty: whatever the model can produce
    image_counts: tuple[int, ...] | None  # None: the catalog model's own
    max_images: int | None = None  # the most images an edit may send; None: the model's own


def problems(catalog: Catalog) -> list[str]:
    """What is inconsistent in the catalog's ``[openai]`` table."""
    section, found = catalog.openai, []
    if section.default_model not in set(catalog.models) | set(section.aliases):
        found.append(f"openai.default_model {section.default_model!r} unknown")
    if parse_size(section.default_size) is None:
        found.append(f"openai.default_size {section.default_size!r} is not WIDTHxHEIGHT")
    for quality in section.best_qualities:
        if quality not in section.qualities:
            found.append(f"openai.best_qualities: unknown quality {quality!r}")
    for name, template in section.styles.items():
        if "{prompt}" not in template:
            found.append(f"openai.styles.{name}: template lacks {{prompt}}")
    for name, alias in section.aliases.items():
        if name in catalog.models:
            found.append(f"openai alias {name!r} hides the catalog model of that name")
        for target in (alias.model, *alias.quality.values()):
            if target not in catalog.models:
                found.append(f"openai alias {name!r} points at unknown model {target!r}")
        for size in alias.sizes:
            if size != "auto" and parse_size(size) is None:
                found.append(f"openai alias {name!r}: size {size!r} is not WIDTHxHEIGHT")
        for quality in alias.quality:
            if quality not in section.qualities:
                found.append(f"openai alias {name!r}: unknown quality {quality!r}")
    return found


def choose(catalog: Catalog, requested: str | None, quality: str | None) -> ModelChoice:
    """The catalog model behind a ``model`` (an OpenAI name or a catalog model's own)."""
    section = catalog.openai
    if quality is not None and quality not in section.qualities:
        raise InvalidRequest(f"quality must be one of {listing(section.qualities)}", "quality")
    name = requested or section.default_model
    alias = section.aliases.get(name)
    if alias is not None:
        target = alias.quality.get(quality or "", alias.model)
        counts = tuple(range(1, alias.max_n + 1))
        return ModelChoice(name, target, alias.sizes, counts, alias.max_images)
    if name not in catalog.models:
        choices = [*section.aliases, *catalog.models]
        raise InvalidRequest(
            f"model {name!r} is not served here; choose one of {listing(choices)}", "model"
        )
    return ModelChoice(name, name, (), None)


def size_for(
    catalog: Catalog, requested: str | None, choice: ModelChoice, quality: str | None
) -> tuple[int, int] | None:
    """The exact pixel size for ``size``; None means the largest square that the model and the
    caller's tier allow (``auto`` with one of the best qualities)."""
    section = catalog.openai
    name = (requested or section.default_size).strip().lower()
    if choice.sizes and name not in choice.sizes:
        raise InvalidRequest(
            f"size {name!r} is not supported by model {choice.label!r}; supported: "
            f"{', '.join(choice.sizes)}",
            "size",
        )
    if name == "auto":
        if quality in section.best_qualities:
            return None
        name = section.default_size
    size = parse_size(name)
    if size is None:
        raise InvalidRequest(
            f"size {name!r} must be WIDTHxHEIGHT (e.g. 1024x1024) or 'auto'", "size"
        )
    return size


def style_template(catalog: Catalog, style: str | None) -> str | None:
    """The prompt template of an OpenAI ``style`` (``vivid``, ``natural``), if one was sent."""
    if style is None:
        return None
    styles = catalog.openai.styles
    if style not in styles:
        raise InvalidRequest(f"style must be one of {listing(styles)}", "style")
    return styles[style]


@dataclass(frozen=True)
class OpenAIImages:
    """What an OpenAI-dialect request asks for, in OpenAI's names (and darkroom's ``tool``)."""

    prompt: str
    n: int | None = None
    model: str | None = None
    quality: str | None = None
    size: str | None = None
    style: str | None = None
    tool: str | None = None
    background: str | None = None
    edit: bool = False  # source images come with the request
    source_count: int = 0  # how many

    def spec(self, catalog: Catalog) -> ImageSpec:
        """The request in the catalog's terms, or InvalidRequest naming the OpenAI field."""
        from darkroom.core.catalog import FieldNames, ImageSpec  # the catalog imports this module

        choice = choose(catalog, self.model, self.quality)
        if self.background == "transparent":
            raise InvalidRequest(
                f"model {choice.label!r} cannot make transparent backgrounds; "
                "use background 'opaque' or 'auto'",
                field="background",
            )
        return ImageSpec(
            prompt=self.prompt,
            image_count=self.n or 1,
            model=choice.model,
            model_label=choice.label,
            aspect_ratio="1:1",
            resolution="auto",
            tool=self.tool,
            size=size_for(catalog, self.size, choice, self.quality),
            image_counts=choice.image_counts,
            prompt_template=style_template(catalog, self.style),
            edit=self.edit,
            source_count=self.source_count,
            max_inputs=choice.max_images,
            fields=FieldNames(prompt="prompt", image_count="n", tool="tool", images="image"),
        )
