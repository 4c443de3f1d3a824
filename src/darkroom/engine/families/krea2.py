"""Krea 2: ``Krea2Pipeline``, text to image only.

A Qwen3-VL text encoder tapped at several layers, the Qwen-Image VAE, a single-stream MMDiT with
2x2 patches. The distilled (Turbo) checkpoint's recipe is 8 steps without guidance.
"""

from __future__ import annotations

from typing import Any

from darkroom.engine.families.base import Capabilities, Family, Job, Mode, Recipe


class Krea2(Family):
    name = "krea2"
    title = "Krea 2"
    pipeline_classes = ("Krea2Pipeline",)
    mode_classes = {Mode.GENERATE: "Krea2Pipeline"}
    capabilities = Capabilities(generate=True, edit=False, references=0, mask=False, strength=False)
    recipe = Recipe(steps=8, guidance=0.0, max_sequence_length=512)

    def multiple(self) -> int:
        scale = int(getattr(self.pipeline, "vae_scale_factor", 8))
        return max(16, scale * int(getattr(self.pipeline, "patch_size", 2)))

    def arguments(self, job: Job) -> dict[str, Any]:
        return {"guidance_scale": job.settings.guidance}
