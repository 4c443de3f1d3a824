"""The model families the diffusers backend serves, one module each (the diffusers habit: one
file per pipeline), and how a model's family is found.

A weights table names its family (``family = "flux2-klein"``); without one, the family is the one
whose pipeline classes include the weights' ``model_index.json`` ``_class_name``. Weights of
another family are refused before anything is loaded. Importing this package imports neither
torch nor diffusers: the catalog asks it what each model can do.
"""

from __future__ import annotations

from darkroom.engine.families.base import Capabilities, Family, Mode, Recipe, Settings
from darkroom.engine.families.flux import Flux
from darkroom.engine.families.flux2_klein import Flux2Klein
from darkroom.engine.families.krea2 import Krea2
from darkroom.engine.families.qwen_edit import QwenEdit
from darkroom.engine.families.qwen_image import QwenImage
from darkroom.engine.families.sdxl import Sdxl
from darkroom.engine.families.zimage import ZImage

__all__ = [
    "FAMILIES",
    "Capabilities",
    "Family",
    "Mode",
    "Recipe",
    "Settings",
    "by_name",
    "for_pipeline_class",
]

FAMILIES: dict[str, type[Family]] = {
    family.name: family for family in (Flux, Flux2Klein, ZImage, QwenEdit, QwenImage, Krea2, Sdxl)
}


def by_name(name: str) -> type[Family]:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(
            f"unknown model family {name!r}; the families are {', '.join(FAMILIES)}"
        ) from None


def for_pipeline_class(class_name: str) -> type[Family] | None:
    """The family that loads weights saved as ``class_name`` (model_index.json), if any."""
    for family in FAMILIES.values():
        if class_name in family.pipeline_classes:
            return family
    return None
