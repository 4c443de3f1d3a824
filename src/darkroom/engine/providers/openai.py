"""OpenAI's Images API, and any upstream that speaks it (another gateway, LocalAI, LiteLLM, an
AIGNE Hub): ``POST {base_url}/images/generations`` (JSON) and ``POST {base_url}/images/edits``
(multipart: ``image[]``, ``mask``), ``Authorization: Bearer``. GPT Image models answer in base64
(``b64_json``) with their token usage; DALL-E models are asked for base64 too.

Sizes: GPT Image 1 takes 1024x1024, 1536x1024 (landscape) and 1024x1536 (portrait); the nearest
shape is asked for and the image fitted to the project's size. An upstream marked ``exact_size``
(GPT Image 2, an OpenAI-compatible server of an open model such as SGLang Diffusion or
vLLM-Omni) is asked for the project's size itself, scaled down to GPT Image 2's largest
(3840x2160) where it is larger. The request options its upstream lists
(``moderation``, ``input_fidelity`` on edits) are passed on.
"""

from __future__ import annotations

import math
from typing import Any

from darkroom.engine.base import RenderRequest
from darkroom.engine.providers.base import (
    Call,
    OpenAIShaped,
    aspect,
    bearer,
)
from darkroom.engine.upstream import UpstreamEntry

USAGE = {name: name for name in ("input_tokens", "output_tokens", "total_tokens")}
SIZES = {"1:1": "1024x1024", "3:2": "1536x1024", "2:3": "1024x1536"}
# GPT Image 2's largest size, as the openai package documents it (3840x2160: a side, and pixels).
MAX_EDGE = 3840
MAX_PIXELS = 3840 * 2160


def exact_size(width: int, height: int) -> str:
    """The project's size, or its shape scaled down to the largest size GPT Image 2 takes
    (sides multiples of 16)."""
    scale = min(1.0, MAX_EDGE / max(width, height), math.sqrt(MAX_PIXELS / (width * height)))
    if scale == 1.0:
        return f"{width}x{height}"
    return f"{int(width * scale) // 16 * 16}x{int(height * scale) // 16 * 16}"


class OpenAI(OpenAIShaped):
    name = "openai"
    title = "OpenAI"
    usage_names = USAGE
    max_per_call = 10

    def call(
        self, request: RenderRequest, upstream: UpstreamEntry, key: str, n: int, first: int
    ) -> Call:
        if upstream.exact_size:
            size = exact_size(request.width, request.height)
        else:
            size = SIZES[aspect(request.width, request.height, tuple(SIZES))]
        base = upstream.base_url.rstrip("/")
        fields: dict[str, Any] = {"model": upstream.model, "prompt": request.prompt, "n": n}
        fields["size"] = size
        if upstream.model.startswith("dall-e"):
            fields["response_format"] = "b64_json"
        for name in upstream.options:
            value = request.options.get(name)
            if value is not None and (name != "input_fidelity" or request.sources):
                fields[name] = value
        if not request.sources:
            return Call(f"{base}/images/generations", bearer(key), json=fields)
        files = [
            ("image[]", (f"source-{i}.png", data, "image/png"))
            for i, data in enumerate(request.sources, start=1)
        ]
        if request.mask is not None:
            files.append(("mask", ("mask.png", request.mask, "image/png")))
        data = {name: str(value) for name, value in fields.items()}
        return Call(f"{base}/images/edits", bearer(key), data=data, files=files)
