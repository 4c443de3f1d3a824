"""Output formats: PNG passes through, JPEG and WEBP are re-encoded at the asked quality."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image

from darkroom.engine.encode import (
    DEFAULT_QUALITY,
    OUTPUT_FORMATS,
    encode,
    extension,
    media_type,
    quality,
)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def noise(size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Image.Image:
    """Random pixels: they compress badly, so the quality shows in the size."""
    data = random.Random(1).randbytes(size[0] * size[1] * len(mode))
    return Image.frombytes(mode, size, data)


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_formats_extensions_and_media_types() -> None:
    assert OUTPUT_FORMATS == ("png", "jpeg", "webp")
    assert [extension(f) for f in OUTPUT_FORMATS] == ["png", "jpg", "webp"]
    assert [media_type(f) for f in OUTPUT_FORMATS] == ["image/png", "image/jpeg", "image/webp"]
    assert media_type("jpg") == media_type("JPG") == "image/jpeg"


@pytest.mark.parametrize(
    ("fmt", "pillow_format", "mode"),
    [("png", "PNG", "RGB"), ("jpeg", "JPEG", "RGB"), ("webp", "WEBP", "RGB")],
)
def test_each_format_decodes_to_the_same_size(fmt: str, pillow_format: str, mode: str) -> None:
    image = decode(encode(png(noise()), fmt, 80))
    assert image.format == pillow_format
    assert image.mode == mode
    assert image.size == (64, 48)


def test_png_is_returned_unchanged() -> None:
    data = png(noise())
    assert encode(data, "png") is data
    assert encode(data, "png", 10) is data


def test_jpeg_lays_transparency_over_white() -> None:
    image = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    image.paste((200, 0, 0, 255), (0, 0, 16, 32))
    decoded = decode(encode(png(image), "jpeg", 100))
    assert decoded.mode == "RGB"
    r, g, b = decoded.getpixel((28, 16))  # type: ignore[misc]
    assert min(r, g, b) > 240  # the transparent half is white, not black
    r, g, b = decoded.getpixel((4, 16))  # type: ignore[misc]
    assert r > 170 and g < 40 and b < 40


def test_webp_keeps_transparency() -> None:
    image = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    image.paste((0, 0, 200, 255), (0, 0, 16, 32))
    decoded = decode(encode(png(image), "webp", 90))
    assert decoded.mode == "RGBA"
    assert decoded.getpixel((28, 16))[3] == 0  # type: ignore[index]
    assert decoded.getpixel((4, 16))[3] == 255  # type: ignore[index]


def test_other_png_modes_are_encoded() -> None:
    grey = png(noise(mode="L"))
    assert decode(encode(grey, "jpeg")).mode == "RGB"
    assert decode(encode(grey, "webp")).mode == "RGB"


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_lower_compression_gives_smaller_files(fmt: str) -> None:
    data = png(noise())
    sizes = [len(encode(data, fmt, c)) for c in (10, 50, 95)]
    assert sizes == sorted(sizes)
    assert sizes[0] < sizes[2] / 2


def test_compression_is_the_quality_clamped_to_1_100() -> None:
    assert quality(None) == DEFAULT_QUALITY == 90
    assert quality(0) == 1
    assert quality(1) == 1
    assert quality(73) == 73
    assert quality(100) == 100
    assert quality(250) == 100
    data = png(noise())
    assert encode(data, "jpeg", 0) == encode(data, "jpeg", 1)
    assert encode(data, "jpeg") == encode(data, "jpeg", 90)


def test_encoding_is_deterministic() -> None:
    data = png(noise())
    for fmt in OUTPUT_FORMATS:
        assert encode(data, fmt, 70) == encode(data, fmt, 70)


@pytest.mark.parametrize("fmt", ["gif", "JPEG", "jpg", ""])
def test_unknown_formats_are_refused(fmt: str) -> None:
    with pytest.raises(ValueError, match="unknown output format"):
        encode(png(noise()), fmt)
    with pytest.raises(ValueError, match="unknown output format"):
        extension(fmt)


def test_unknown_media_types_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown output format"):
        media_type("gif")
