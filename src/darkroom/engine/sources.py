"""An edit's source images and mask as a diffusion pipeline takes them.

Sources arrive as encoded images (core hands over upright RGBA PNGs). Here they are decoded,
flattened to RGB and sized: never stretched, each is scaled and centre-cropped, so its aspect
ratio is kept up to the crop, with both sides a multiple of 16 (what every family's VAE and
patching need).

- The image to change (image-to-image, inpainting) is fitted to the output size, the mask with
  it, so that the kept pixels can be laid back exactly where they were.
- References (the further sources, or all of them for a model that edits by reference) are
  fitted within the family's pixel budget at their own aspect ratio.

The mask follows OpenAI's convention: transparent pixels mark where the image may change, opaque
ones where it must stay. A mask without an alpha channel is read as diffusers reads one: white
changes, black stays. Either way the result is an "L" image, 255 where the image changes.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from PIL import Image, ImageOps

from darkroom.engine.base import BackendError

MULTIPLE = 16  # every side handed to a pipeline is a multiple of this


@dataclass(frozen=True)
class Sources:
    """The decoded sources of one request (RGB, in order) and its mask ("L", or None)."""

    images: tuple[Image.Image, ...]
    mask: Image.Image | None


def decode(sources: tuple[bytes, ...], mask: bytes | None) -> Sources:
    """Every source and the mask decoded; one that does not decode is a ``BackendError``."""
    images = tuple(
        _flatten(_open(data, f"source image {i + 1}", "invalid_source"))
        for i, data in enumerate(sources)
    )
    return Sources(images, None if mask is None else _mask(_open(mask, "the mask", "invalid_mask")))


def _open(data: bytes, what: str, code: str) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return ImageOps.exif_transpose(image)
    except Exception:  # broken data makes Pillow raise all sorts of errors
        raise BackendError(code, f"{what} is not a readable image") from None


def _flatten(image: Image.Image) -> Image.Image:
    """RGB, transparent parts white (as the Qwen editors were trained to see them)."""
    if image.mode == "RGB":
        return image
    rgba = image.convert("RGBA")
    flat = Image.new("RGB", rgba.size, (255, 255, 255))
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat


def _mask(image: Image.Image) -> Image.Image:
    """255 where the image may change: transparent pixels, or white ones in a mask without alpha."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        return ImageOps.invert(image.convert("RGBA").getchannel("A"))
    return image.convert("L")


def fit(image: Image.Image, size: tuple[int, int], *, resample: int | None = None) -> Image.Image:
    """``image`` scaled to cover ``size`` and centre-cropped to it: no distortion."""
    method = Image.Resampling.LANCZOS if resample is None else resample
    return ImageOps.fit(image, size, method)


def within(image: Image.Image, max_pixels: int, multiple: int = MULTIPLE) -> Image.Image:
    """``image`` at its own aspect ratio, at most ``max_pixels``, sides multiples of ``multiple``
    (scaled down, never up, and centre-cropped by less than ``multiple`` pixels a side)."""
    width, height = image.size
    scale = min(1.0, math.sqrt(max_pixels / (width * height)))
    target = (
        max(multiple, int(width * scale) // multiple * multiple),
        max(multiple, int(height * scale) // multiple * multiple),
    )
    return image if target == image.size else fit(image, target)


def keep_unmasked(generated: Image.Image, source: Image.Image, mask: Image.Image) -> Image.Image:
    """``generated`` where ``mask`` allows a change, ``source`` elsewhere (the three the same
    size): what a mask promises, whatever the autoencoder made of the kept part."""
    return Image.composite(generated, source, mask)
