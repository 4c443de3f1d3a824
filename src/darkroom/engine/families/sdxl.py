"""Stable Diffusion XL (SDXL-Turbo and kin): ``StableDiffusionXLPipeline``, with
``StableDiffusionXLImg2ImgPipeline`` and ``StableDiffusionXLInpaintPipeline`` made from it for
edits. Two CLIP encoders, a UNet, the SDXL VAE; SDXL-Turbo's recipe is 1 step without guidance
(an operator adds it in the catalog, with its own steps and guidance).
"""

from __future__ import annotations

from typing import Any

from darkroom.engine.families.base import Capabilities, Family, Job, Mode, Recipe


class Sdxl(Family):
    name = "sdxl"
    title = "Stable Diffusion XL"
    pipeline_classes = (
        "StableDiffusionXLPipeline",
        "StableDiffusionXLImg2ImgPipeline",
        "StableDiffusionXLInpaintPipeline",
    )
    mode_classes = {
        Mode.GENERATE: "StableDiffusionXLPipeline",
        Mode.IMAGE: "StableDiffusionXLImg2ImgPipeline",
        Mode.INPAINT: "StableDiffusionXLInpaintPipeline",
    }
    capabilities = Capabilities(generate=True, edit=True, references=1, mask=True, strength=True)
    recipe = Recipe(steps=1, guidance=0.0)

    def arguments(self, job: Job) -> dict[str, Any]:
        return {"guidance_scale": job.settings.guidance, **self.image_arguments(job)}
