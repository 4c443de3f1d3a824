"""Google's Gemini API (the Nano Banana models): ``POST {base_url}/v1beta/models/{model}:
generateContent`` with ``x-goog-api-key``; the prompt (and, for an edit, the source images as
``inline_data`` parts) in ``contents``, ``generationConfig.responseModalities`` ``["IMAGE"]`` and
``imageConfig.aspectRatio`` (with ``imageSize`` for the models that take it). The images come
back as ``inlineData`` parts, one image per call: a project of n images makes n calls, at once.
A prompt the model refuses comes back with no image and a ``blockReason`` or ``finishReason``.
"""

from __future__ import annotations

from typing import Any

from darkroom.engine.base import RenderRequest
from darkroom.engine.providers.base import (
    Answer,
    Call,
    aspect,
    counts,
    decode_base64,
    error_message,
    png_base64,
)
from darkroom.engine.upstream import UpstreamEntry

USAGE = {
    "promptTokenCount": "input_tokens",
    "candidatesTokenCount": "output_tokens",
    "totalTokenCount": "total_tokens",
}
RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")


def image_size(width: int, height: int) -> str:
    edge = max(width, height)
    return "1K" if edge <= 1024 else "2K" if edge <= 2048 else "4K"


class Gemini:
    name = "gemini"
    title = "Gemini"
    max_per_call = 1

    def call(
        self, request: RenderRequest, upstream: UpstreamEntry, key: str, n: int, first: int
    ) -> Call:
        parts: list[dict[str, Any]] = [{"text": request.prompt}]
        parts += [
            {"inline_data": {"mime_type": "image/png", "data": png_base64(data)}}
            for data in request.sources
        ]
        image_config: dict[str, Any] = {
            "aspectRatio": aspect(request.width, request.height, RATIOS)
        }
        if upstream.image_size:
            image_config["imageSize"] = image_size(request.width, request.height)
        body = {
            "contents": [{"role": "user", "parts": parts}],
            "generationConfig": {
                "responseModalities": ["IMAGE"],
                "imageConfig": image_config,
                "seed": (request.seed + first) % 2**31,
            },
        }
        url = f"{upstream.base_url.rstrip('/')}/v1beta/models/{upstream.model}:generateContent"
        return Call(url, {"x-goog-api-key": key}, json=body)

    def answer(self, body: Any) -> Answer:
        if not isinstance(body, dict):
            return Answer(refusal="an answer that is not an object")
        images: list[bytes | str] = []
        reasons = []
        for candidate in body.get("candidates") or []:
            content = candidate.get("content") or {}
            for part in content.get("parts") or []:
                inline = part.get("inlineData") or part.get("inline_data")
                if isinstance(inline, dict) and inline.get("data"):
                    images.append(decode_base64(str(inline["data"]), self.title))
            reason = candidate.get("finishReason")
            if reason and reason != "STOP":
                reasons.append(f"finish reason {reason}")
        feedback = body.get("promptFeedback") or {}
        if feedback.get("blockReason"):
            reasons.append(f"the prompt was blocked ({feedback['blockReason']})")
        usage = counts(body.get("usageMetadata"), USAGE)
        return Answer(images, usage, refusal="; ".join(reasons) or None)

    def error(self, body: Any) -> str:
        return error_message(body)

    def retry_delay(self, body: Any) -> float | None:
        """``google.rpc.RetryInfo``'s ``retryDelay`` ("1.5s") in ``error.details``."""
        error = body.get("error") if isinstance(body, dict) else None
        for detail in (error or {}).get("details") or []:
            delay = detail.get("retryDelay") if isinstance(detail, dict) else None
            if isinstance(delay, str) and delay.endswith("s"):
                try:
                    return float(delay[:-1])
                except ValueError:
                    return None
        return None
