"""Qwen-Image 2.1: ``QwenImage21Pipeline``, text to image, and image-conditioned generation from
references (``image=[...]``).

A Qwen3-VL encoder reads the prompt and every reference together; a 16x VAE (64 latent channels)
and a block-causal transformer that caches the text and reference tokens after the first step.
Sizes are multiples of 32 (the family renders at the next one and crops back). The recipe is
the pipeline's default (40 steps, or the weights' own ``sample_sigmas``, no true guidance).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from darkroom.engine.families.base import Capabilities, Family, Job, Mode, Recipe
from darkroom.engine.families.qwen_edit import true_guidance
from darkroom.engine.families.qwen_processor import processor_arguments


class QwenImage(Family):
    name = "qwen-image"
    title = "Qwen-Image 2.1"
    pipeline_classes = ("QwenImage21Pipeline",)
    mode_classes = {Mode.GENERATE: "QwenImage21Pipeline", Mode.REFERENCES: "QwenImage21Pipeline"}
    edit_mode = Mode.REFERENCES
    capabilities = Capabilities(generate=True, edit=True, references=3, mask=False, strength=False)
    recipe = Recipe(steps=40, guidance=1.0)

    @classmethod
    def load_arguments(cls, directory: Path) -> dict[str, Any]:
        return processor_arguments(directory, "Qwen3VLProcessor")

    def arguments(self, job: Job) -> dict[str, Any]:
        arguments: dict[str, Any] = true_guidance(job.settings.guidance)
        if job.references:
            arguments["image"] = list(job.references)
            # the references are read at about this side's square, as the output is made
            arguments["output_resolution"] = round(math.sqrt(job.width * job.height))
        return arguments
