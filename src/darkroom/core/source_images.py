"""Caller-supplied source images (an edit's ``image`` and ``mask``) turned into safe PNG bytes.

Nothing the caller says about an upload is trusted: the bytes are opened by content, only as PNG,
JPEG, WEBP or GIF (its first frame), and the pixel count is checked from the header before any
pixel is decoded. What reaches a backend is always an upright RGBA PNG. Every problem is an
:class:`InvalidRequest` naming the request field, with a one-line message.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings

from PIL import Image, ImageOps

from darkroom.core.errors import InvalidRequest

FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF")
# What an upload (POST /v1/files/upload-urls) may hold: the image types the published SDK uploads.
UPLOAD_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "AVIF", "BMP", "TIFF")


def _megabytes(count: int) -> str:
    return f"{count / (1 << 20):.3g} MB"


def _too_large(field: str, max_bytes: int) -> InvalidRequest:
    return InvalidRequest(f"{field}: larger than the {_megabytes(max_bytes)} limit", field=field)


def looks_like_url(text: str) -> bool:
    """Whether ``text`` is an http(s) URL rather than base64 image data."""
    return text.lstrip()[:8].lower().startswith(("http://", "https://"))


def decode_base64(text: str, *, max_bytes: int, field: str) -> bytes:
    """The bytes of plain base64 or a ``data:...;base64,`` URL; whitespace is ignored.

    URL-safe base64 and missing padding are accepted. A string too long for ``max_bytes`` is
    refused before it is decoded.
    """
    body = text.strip()
    if body[:5].lower() == "data:":
        header, comma, body = body.partition(",")
        if not comma or not header.lower().endswith(";base64"):
            message = f"{field}: a data URL must be base64 encoded (data:image/png;base64,...)"
            raise InvalidRequest(message, field=field)
    body = "".join(body.split())
    if not body:
        raise InvalidRequest(f"{field}: no image data", field=field)
    if len(body.rstrip("=")) * 3 // 4 > max_bytes:
        raise _too_large(field, max_bytes)
    try:
        data = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{field}: not valid base64", field=field) from None
    if len(data) > max_bytes:
        raise _too_large(field, max_bytes)
    return data


def _too_many_pixels(field: str, max_pixels: int, size: tuple[int, int] | None) -> InvalidRequest:
    shown = f"{size[0]}x{size[1]} is" if size else "the image has"
    return InvalidRequest(f"{field}: {shown} more than {max_pixels} pixels", field=field)


def _decode(data: bytes, max_pixels: int, field: str, formats: tuple[str, ...]) -> Image.Image:
    """The first frame of ``data``, upright and RGBA; the size is checked before decoding."""
    with Image.open(io.BytesIO(data), formats=formats) as image:
        width, height = image.size
        if width * height > max_pixels:
            raise _too_many_pixels(field, max_pixels, (width, height))
        image.load()
        return ImageOps.exif_transpose(image).convert("RGBA")


def normalise(
    data: bytes,
    *,
    max_bytes: int,
    max_pixels: int,
    field: str,
    formats: tuple[str, ...] = FORMATS,
) -> tuple[bytes, tuple[int, int]]:
    """``data`` as an upright RGBA PNG and its (width, height); anything but an image in one of
    ``formats`` is refused."""
    if len(data) > max_bytes:
        raise _too_large(field, max_bytes)
    try:
        # Pillow warns, then raises, on images beyond its own limit: both are refusals here.
        # catch_warnings is process-wide; a filter left behind by a concurrent call is harmless.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = _decode(data, max_pixels, field, formats)
    except InvalidRequest:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)  # Pillow's may be lower
        raise _too_many_pixels(field, limit, None) from None
    except Exception:  # hostile or broken data makes Pillow raise all sorts of errors
        names = ", ".join(formats[:-1]) + f" or {formats[-1]}"
        message = f"{field}: cannot be decoded as {names}"
        raise InvalidRequest(message, field=field) from None
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue(), image.size


def sniff(data: bytes, formats: tuple[str, ...]) -> bool:
    """Whether ``data`` starts as an image in one of ``formats`` (its header only is read)."""
    try:
        with Image.open(io.BytesIO(data), formats=formats):
            return True
    except Exception:  # anything Pillow cannot open
        return False


def check_mask(mask_size: tuple[int, int], image_size: tuple[int, int]) -> None:
    """Refuse a mask whose size differs from the image's (OpenAI requires the same size)."""
    if mask_size != image_size:
        message = (
            f"mask: {mask_size[0]}x{mask_size[1]} does not match the image's "
            f"{image_size[0]}x{image_size[1]}; they must be the same size"
        )
        raise InvalidRequest(message, field="mask")
