"""FLUX.2 [klein]: ``Flux2KleinPipeline`` for text to image and editing by reference (every
source goes in ``image=[...]``), ``Flux2KleinInpaintPipeline`` (``from_pipe``) for a mask.

One checkpoint does it all: a Qwen3 text encoder whose hidden states of three layers are stacked
(so the transformer's ``joint_attention_dim`` is three times the encoder's width), the FLUX.2 VAE
with 2x2 patches, 4 steps for the distilled 4 B model (guidance is then ignored above 1).
Inpainting changes the first source where the mask says; the further sources are references.
Its ``__call__`` takes ``image`` first, so everything is passed by keyword.
"""

from __future__ import annotations

from typing import Any

from darkroom.engine.families.base import Capabilities, Family, Job, Mode, Recipe


class Flux2Klein(Family):
    name = "flux2-klein"
    title = "FLUX.2 [klein]"
    pipeline_classes = ("Flux2KleinPipeline", "Flux2KleinInpaintPipeline")
    mode_classes = {
        Mode.GENERATE: "Flux2KleinPipeline",
        Mode.REFERENCES: "Flux2KleinPipeline",
        Mode.INPAINT: "Flux2KleinInpaintPipeline",
    }
    edit_mode = Mode.REFERENCES
    capabilities = Capabilities(generate=True, edit=True, references=4, mask=True, strength=True)
    recipe = Recipe(steps=4, guidance=1.0, max_sequence_length=512)

    def arguments(self, job: Job) -> dict[str, Any]:
        arguments: dict[str, Any] = {"guidance_scale": job.settings.guidance}
        if job.mode is Mode.REFERENCES:
            arguments["image"] = list(job.references)
        elif job.mode is Mode.INPAINT:
            arguments.update(self.image_arguments(job))
            if job.references:
                arguments["image_reference"] = list(job.references)
        return arguments
