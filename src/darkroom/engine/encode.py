"""Output formats: the backends' PNGs re-encoded as the caller asked (OpenAI's ``output_format``).

``compression`` is OpenAI's ``output_compression`` (0..100) and is used as the encoder's quality:
the quality is ``compression`` clamped to 1..100 (0 becomes 1), or :data:`DEFAULT_QUALITY` when it
is None. It applies to JPEG and WEBP; a PNG is returned as the backend made it. JPEG has no alpha,
so a translucent image is laid over white first; WEBP keeps the alpha.
"""

from __future__ import annotations

import io

from PIL import Image

OUTPUT_FORMATS: tuple[str, ...] = ("png", "jpeg", "webp")
DEFAULT_QUALITY = 90

_EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
_MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp"}


def _known(fmt: str) -> str:
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"unknown output format {fmt!r}, expected one of {OUTPUT_FORMATS}")
    return fmt


def extension(fmt: str) -> str:
    """The file extension for an output format, without the dot: ``"jpeg"`` gives ``"jpg"``."""
    return _EXTENSIONS[_known(fmt)]


def media_type(fmt_or_extension: str) -> str:
    """The media type for an output format or an extension (``"jpeg"``, ``"jpg"``, ``"JPG"``)."""
    try:
        return _MEDIA_TYPES[fmt_or_extension.lower()]
    except KeyError:
        raise ValueError(f"unknown output format {fmt_or_extension!r}") from None


def quality(compression: int | None) -> int:
    """The encoder quality for an ``output_compression``: clamped to 1..100, None gives 90."""
    if compression is None:
        return DEFAULT_QUALITY
    return min(100, max(1, compression))


def encode(png: bytes, fmt: str, compression: int | None = None) -> bytes:
    """``png`` re-encoded as ``fmt``; a PNG comes back unchanged. Unknown formats: ValueError."""
    if _known(fmt) == "png":
        return png
    with Image.open(io.BytesIO(png), formats=["PNG"]) as source:
        source.load()
        image = _opaque(source) if fmt == "jpeg" else _colour(source)
        buffer = io.BytesIO()
        image.save(buffer, format=fmt.upper(), quality=quality(compression), optimize=False)
    return buffer.getvalue()


def _opaque(image: Image.Image) -> Image.Image:
    """RGB for JPEG: a translucent image is laid over white."""
    if not image.has_transparency_data:
        return image.convert("RGB")
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    white.alpha_composite(image.convert("RGBA"))
    return white.convert("RGB")


def _colour(image: Image.Image) -> Image.Image:
    """RGB, or RGBA when the image has transparency."""
    if image.mode in ("RGB", "RGBA"):
        return image
    return image.convert("RGBA" if image.has_transparency_data else "RGB")
