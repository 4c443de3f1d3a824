"""BytePlus ModelArk's image generation API (Seedream): ``POST {base_url}/images/generations``
with ``Authorization: Bearer``; ``size`` as ``WxH``, ``response_format`` ``b64_json``, ``seed``,
``watermark: false``, and for an edit the source images as ``image`` (``data:`` URLs). One image
per call (``sequential_image_generation: disabled``): a project of n images makes n calls, at
once. An answer with URLs instead of base64 (another ModelArk-compatible upstream) is
downloaded at once: those URLs expire.

Seedream 4.0 takes sizes of 921,600 to 16,777,216 pixels (1280x720 up to 4096x4096): the
project's size is scaled into that range, its shape kept.
"""

from __future__ import annotations

import math
from typing import Any

from darkroom.engine.base import RenderRequest
from darkroom.engine.providers.base import (
    Call,
    OpenAIShaped,
    bearer,
    png_base64,
)
from darkroom.engine.upstream import UpstreamEntry

USAGE = {name: name for name in ("generated_images", "output_tokens", "total_tokens")}
MIN_PIXELS = 1280 * 720
MAX_PIXELS = 4096 * 4096


def size_for(width: int, height: int) -> str:
    """The project's shape at a size Seedream accepts (multiples of 8)."""
    scale = 1.0
    if width * height < MIN_PIXELS:
        scale = math.sqrt(MIN_PIXELS / (width * height))
    elif width * height > MAX_PIXELS:
        scale = math.sqrt(MAX_PIXELS / (width * height))
    w = math.ceil(width * scale / 8) * 8 if scale >= 1 else math.floor(width * scale / 8) * 8
    h = math.ceil(height * scale / 8) * 8 if scale >= 1 else math.floor(height * scale / 8) * 8
    return f"{w}x{h}"


class Seedream(OpenAIShaped):
    name = "seedream"
    title = "Seedream"
    usage_names = USAGE
    max_per_call = 1

    def call(
        self, request: RenderRequest, upstream: UpstreamEntry, key: str, n: int, first: int
    ) -> Call:
        body: dict[str, Any] = {
            "model": upstream.model,
            "prompt": request.prompt,
            "size": size_for(request.width, request.height),
            "response_format": "b64_json",
            "seed": (request.seed + first) % 2**31,
            "sequential_image_generation": "disabled",
            "watermark": False,
        }
        if request.sources:
            images = [f"data:image/png;base64,{png_base64(data)}" for data in request.sources]
            body["image"] = images[0] if len(images) == 1 else images
        return Call(f"{upstream.base_url.rstrip('/')}/images/generations", bearer(key), json=body)
