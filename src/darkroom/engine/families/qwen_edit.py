"""Qwen-Image-Edit (2509, 2511): ``QwenImageEditPlusPipeline``, editing by reference only.

Every source goes in ``image=[...]``: the Qwen2.5-VL encoder reads each (at about 384x384) with
the prompt, and the VAE encodes each (at about 1024x1024) as context for the transformer. It
makes no image without a source. The recipe is the model card's: 40 steps, true classifier-free
guidance 4.0 against an empty negative prompt; one to three sources work best.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from darkroom.engine.families.base import Capabilities, Family, Job, Mode, Recipe
from darkroom.engine.families.qwen_processor import processor_arguments


class QwenEdit(Family):
    name = "qwen-edit"
    title = "Qwen-Image-Edit"
    pipeline_classes = ("QwenImageEditPlusPipeline",)
    mode_classes = {Mode.REFERENCES: "QwenImageEditPlusPipeline"}
    edit_mode = Mode.REFERENCES
    capabilities = Capabilities(generate=False, edit=True, references=3, mask=False, strength=False)
    recipe = Recipe(steps=40, guidance=4.0, max_sequence_length=512)

    @classmethod
    def load_arguments(cls, directory: Path) -> dict[str, Any]:
        return processor_arguments(directory, "Qwen2VLProcessor")

    def arguments(self, job: Job) -> dict[str, Any]:
        return {"image": list(job.references), **true_guidance(job.settings.guidance)}


def true_guidance(scale: float) -> dict[str, Any]:
    """Qwen's true classifier-free guidance: on (against an empty negative prompt) above 1."""
    if scale > 1:
        return {"true_cfg_scale": scale, "negative_prompt": " "}
    return {"true_cfg_scale": 1.0}
