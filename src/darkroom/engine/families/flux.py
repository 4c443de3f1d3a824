"""FLUX.1 ([schnell], and [dev] with its own steps and guidance): ``FluxPipeline``, with
``FluxImg2ImgPipeline`` and ``FluxInpaintPipeline`` made from it for edits.

Two text encoders (CLIP-L pooled, T5-XXL up to 512 tokens), a 16-channel VAE, 2x2 patches. The
schnell recipe is 4 steps without guidance; one source image, moved by a strength or repainted
where a mask says.
"""

from __future__ import annotations

from typing import Any

from darkroom.engine.families.base import Capabilities, Family, Job, Mode, Recipe


class Flux(Family):
    name = "flux"
    title = "FLUX.1"
    pipeline_classes = ("FluxPipeline", "FluxImg2ImgPipeline", "FluxInpaintPipeline")
    mode_classes = {
        Mode.GENERATE: "FluxPipeline",
        Mode.IMAGE: "FluxImg2ImgPipeline",
        Mode.INPAINT: "FluxInpaintPipeline",
    }
    capabilities = Capabilities(generate=True, edit=True, references=1, mask=True, strength=True)
    recipe = Recipe(steps=4, guidance=0.0, max_sequence_length=256)
    max_source_pixels = 2048 * 2048

    def arguments(self, job: Job) -> dict[str, Any]:
        return {"guidance_scale": job.settings.guidance, **self.image_arguments(job)}
