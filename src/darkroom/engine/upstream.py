"""The upstream table of a model served by a vendor's API (``[models.<name>.upstream]``): where
darkroom sends its requests, which of the vendor's models it asks for, and where the key is.

The key itself is never in the catalog: ``api_key_env`` names the environment variable that
holds it, read once when the server starts. The provider backends own this shape, so ``engine``
needs nothing from ``core``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class UpstreamEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The vendor's API root, e.g. https://api.openai.com/v1 (no trailing path of the call).
    base_url: str = Field(pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    # The vendor's model id, e.g. gpt-image-1, gemini-2.5-flash-image, seedream-4-0-250828.
    model: str = Field(min_length=1)
    # The environment variable holding the API key.
    api_key_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # The whole upstream part of a render (every call, retry and download) must end within this.
    timeout_seconds: float = Field(default=120.0, gt=0, le=3600)
    # 429 and 5xx answers are retried this many times (honouring Retry-After), within the timeout.
    max_retries: int = Field(default=3, ge=0, le=10)
    # Gemini: also send imageConfig.imageSize (1K, 2K, 4K), which Gemini 3 Pro Image takes.
    image_size: bool = False
    # OpenAI-shaped upstreams: send the project's size as it is (GPT Image 2, and the
    # OpenAI-compatible servers of open models, take any WIDTHxHEIGHT) instead of the nearest
    # of GPT Image 1's three sizes.
    exact_size: bool = False
    # The request options (RenderRequest.options: "moderation", "input_fidelity") this upstream
    # takes; the others are not sent to it.
    options: tuple[str, ...] = ()
