"""The weights table of a model served by the diffusers backend: what it loads, and how it runs it.

The catalog carries one per model (``[models.<name>.weights]``) and validates it with this class;
the backend owns the shape, so ``engine`` needs nothing from ``core``.
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
    steps: int = Field(ge=1, le=200)
    guidance: float = Field(default=0.0, ge=0)
    # "auto": bfloat16 on a GPU, float32 on the CPU.
    dtype: str = "auto"
    # Images of one project rendered in one batch at most (more are split into batches).
    max_batch: int = Field(default=4, ge=1, le=16)
    # Longest prompt, in text-encoder tokens, for pipelines that take it (FLUX: up to 512).
    max_sequence_length: int | None = Field(default=None, ge=16, le=4096)

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        if value not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}")
        return value
