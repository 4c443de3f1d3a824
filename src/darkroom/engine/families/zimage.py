"""Z-Image (Turbo): ``ZImagePipeline``, with ``ZImageImg2ImgPipeline`` and
``ZImageInpaintPipeline`` made from it (``from_pipe``: the same weights) for edits.

A Qwen3-4B text encoder, the FLUX.1 VAE, one 6 B single-stream transformer. The Turbo recipe is 9
steps (8 denoising forwards and one) without guidance.
"""

from __future__ import annotations

from typing import Any

from darkroom.engine.families.base import Capabilities, Family, Job, Mode, Recipe


class ZImage(Family):
    name = "zimage"
    title = "Z-Image"
    pipeline_classes = ("ZImagePipeline", "ZImageImg2ImgPipeline", "ZImageInpaintPipeline")
    mode_classes = {
        Mode.GENERATE: "ZImagePipeline",
        Mode.IMAGE: "ZImageImg2ImgPipeline",
        Mode.INPAINT: "ZImageInpaintPipeline",
    }
    capabilities = Capabilities(generate=True, edit=True, references=1, mask=True, strength=True)
    recipe = Recipe(steps=9, guidance=0.0, max_sequence_length=512)
    max_source_pixels = 2048 * 2048

    def arguments(self, job: Job) -> dict[str, Any]:
        return {"guidance_scale": job.settings.guidance, **self.image_arguments(job)}
