"""The weights table of a model served by the diffusers backend: what it loads, and how it runs it.

The catalog carries one per model (``[models.<name>.weights]``) and validates it with this class;
the backend owns the shape, so ``engine`` needs nothing from ``core``. What a table leaves out
(steps, guidance, sequence length, strength, the source cap) is its family's default
(``engine/families/``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

DTYPES = ("auto", "bfloat16", "float16", "float32")


class WeightsEntry(BaseModel):
    """What the diffusers backend loads for a model, and how it runs it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A Hugging Face hub id ("black-forest-labs/FLUX.1-schnell") or a local directory holding a
    # saved pipeline (model_index.json).
    source: str = Field(min_length=1)
    revision: str | None = None
    # The model family (engine/families/: flux, flux2-klein, zimage, qwen-edit, qwen-image,
    # krea2, sdxl). Weights of another family are refused before they are loaded; None: the
    # family is read from the weights' model_index.json.
    family: str | None = None
    # Denoising steps and guidance; None: the family's recipe.
    steps: int | None = Field(default=None, ge=1, le=200)
    guidance: float | None = Field(default=None, ge=0)
    # "auto": bfloat16 on a GPU, float32 on the CPU.
    dtype: str = "auto"
    # Images of one project rendered in one batch at most (more are split into batches).
    max_batch: int = Field(default=4, ge=1, le=16)
    # Longest prompt, in text-encoder tokens, for pipelines that take it (FLUX: up to 512).
    max_sequence_length: int | None = Field(default=None, ge=16, le=4096)
    # How far an image-to-image edit moves from its source when the request does not say.
    strength: float | None = Field(default=None, gt=0, le=1)
    # Source images one request may carry, at most the family's (lower it, never raise it).
    max_sources: int | None = Field(default=None, ge=1, le=16)

    @field_validator("family")
    @classmethod
    def _known_family(cls, value: str | None) -> str | None:
        from darkroom.engine.families import by_name

        if value is not None:
            by_name(value)  # a ValueError naming the families
        return value

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        if value not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}")
        return value
