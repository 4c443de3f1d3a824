"""Source images for edits: base64 and data URLs, sniffed formats, limits, EXIF, masks."""

from __future__ import annotations

import base64
import io
import struct
import warnings
import zlib

import pytest
from PIL import Image

from darkroom.core.errors import InvalidRequest
from darkroom.core.source_images import check_mask, decode_base64, looks_like_url, normalise

MB = 1 << 20


def encoded(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def normal(data: bytes, max_pixels: int = 1_000_000) -> tuple[bytes, tuple[int, int]]:
    return normalise(data, max_bytes=MB, max_pixels=max_pixels, field="image")


def refused(data: bytes, max_pixels: int = 1_000_000, max_bytes: int = MB) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        normalise(data, max_bytes=max_bytes, max_pixels=max_pixels, field="image")
    assert caught.value.field == "image"
    assert "\n" not in caught.value.message
    return caught.value


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header for ``width`` x ``height`` RGB, then part of one row of pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = zlib.compress(b"\x00" + b"\x80" * 3 * min(width, 100))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", row)[:-8]


# --------------------------------------------------------------------------------------------
# base64


def test_plain_base64_and_data_urls() -> None:
    data = b"\x89PNG and some bytes \xff\xfe"
    text = base64.b64encode(data).decode()
    assert decode_base64(text, max_bytes=MB, field="image") == data
    url = f"data:image/png;base64,{text}"
    assert decode_base64(url, max_bytes=MB, field="image") == data
    assert decode_base64("DATA:image/webp;BASE64," + text, max_bytes=MB, field="image") == data


def test_whitespace_urlsafe_and_missing_padding_are_accepted() -> None:
    data = bytes(range(256))
    text = base64.b64encode(data).decode()
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    assert decode_base64(f"  {wrapped}\n", max_bytes=MB, field="image") == data
    urlsafe = base64.urlsafe_b64encode(data).decode().rstrip("=")
    assert decode_base64(urlsafe, max_bytes=MB, field="image") == data


@pytest.mark.parametrize(
    "text", ["not base64 at all!", "abc=d", "a", "data:image/png,rawbytes", "data:image/png"]
)
def test_bad_base64_is_refused(text: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_base64(text, max_bytes=MB, field="mask")
    assert caught.value.field == "mask"
    assert caught.value.message.startswith("mask: ")


@pytest.mark.parametrize("text", ["", "   ", "data:image/png;base64,"])
def test_empty_data_is_refused(text: str) -> None:
    with pytest.raises(InvalidRequest, match="no image data"):
        decode_base64(text, max_bytes=MB, field="image")


def test_the_size_limit_is_exact() -> None:
    text = base64.b64encode(b"x" * 100).decode()
    assert len(decode_base64(text, max_bytes=100, field="image")) == 100
    with pytest.raises(InvalidRequest, match="image: larger than the") as caught:
        decode_base64(text, max_bytes=99, field="image")
    assert caught.value.field == "image"


def test_a_long_string_is_refused_before_it_is_decoded() -> None:
    # Invalid base64 too: had it been decoded, the error would say so.
    with pytest.raises(InvalidRequest, match=r"larger than the 1 MB limit"):
        decode_base64("!" * (2 * MB), max_bytes=MB, field="image")


def test_looks_like_url() -> None:
    assert looks_like_url("https://example.com/a.png")
    assert looks_like_url("HTTP://example.com/a.png")
    assert looks_like_url("  http://x")
    assert not looks_like_url("data:image/png;base64,AAAA")
    assert not looks_like_url("iVBORw0KGgo")
    assert not looks_like_url("ftp://example.com/a.png")


# --------------------------------------------------------------------------------------------
# normalise


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [("PNG", "RGB"), ("PNG", "P"), ("PNG", "LA"), ("JPEG", "RGB"), ("JPEG", "L"), ("WEBP", "RGBA")],
)
def test_images_become_rgba_pngs(fmt: str, mode: str) -> None:
    image = Image.new(mode, (40, 30))
    data, size = normal(encoded(image, fmt))
    assert size == (40, 30)
    out = decode(data)
    assert out.format == "PNG"
    assert out.mode == "RGBA"
    assert out.size == (40, 30)


def test_transparency_is_kept() -> None:
    image = Image.new("RGBA", (8, 8), (10, 20, 30, 0))
    image.putpixel((0, 0), (200, 100, 50, 255))
    out = decode(normal(encoded(image))[0])
    assert out.getpixel((0, 0)) == (200, 100, 50, 255)
    assert out.getpixel((5, 5))[3] == 0  # type: ignore[index]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"just some text, not an image",
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        encoded(Image.new("RGB", (8, 8)), "BMP"),
        encoded(Image.new("RGB", (8, 8)), "TIFF"),
    ],
)
def test_non_images_and_other_formats_are_refused(data: bytes) -> None:
    error = refused(data)
    assert error.message == "image: cannot be decoded as PNG, JPEG, WEBP or GIF"


def test_truncated_images_are_refused() -> None:
    image = Image.frombytes("RGB", (64, 64), bytes(range(256)) * 48)
    for fmt in ("PNG", "JPEG"):
        data = encoded(image, fmt)
        error = refused(data[: len(data) // 2])
        assert error.message == "image: cannot be decoded as PNG, JPEG, WEBP or GIF"


def test_a_corrupt_png_is_refused() -> None:
    data = bytearray(encoded(Image.new("RGB", (32, 32), "blue")))
    data[40:60] = b"\x00" * 20  # inside the image data
    refused(bytes(data))


def test_too_many_pixels_is_refused_from_the_header() -> None:
    # The pixel data is cut short: decoding it would fail with another message ...
    error = refused(png_claiming(5000, 4000))
    assert error.message == "image: 5000x4000 is more than 1000000 pixels"
    # ... as it does within the limit.
    assert "cannot be decoded" in refused(png_claiming(50, 40)).message


def test_a_decompression_bomb_is_refused() -> None:
    # Beyond Pillow's own limit, which refuses it while opening: Pillow's limit is quoted.
    error = refused(png_claiming(100_000, 100_000), max_pixels=10**12)
    assert error.message == f"image: the image has more than {Image.MAX_IMAGE_PIXELS} pixels"
    # Between Pillow's limit and twice it, Pillow only warns: that is a refusal too.
    filters = list(warnings.filters)
    error = refused(png_claiming(10_000, 10_000), max_pixels=10**12)
    assert error.message == f"image: the image has more than {Image.MAX_IMAGE_PIXELS} pixels"
    assert warnings.filters == filters


def test_the_pixel_limit_is_inclusive() -> None:
    data = encoded(Image.new("RGB", (100, 50)))
    assert normal(data, max_pixels=5000)[1] == (100, 50)
    assert refused(data, max_pixels=4999).message == "image: 100x50 is more than 4999 pixels"


def test_the_byte_limit_applies_to_raw_bytes() -> None:
    data = encoded(Image.new("RGB", (16, 16)))
    assert normalise(data, max_bytes=len(data), max_pixels=1000, field="image")
    error = refused(data, max_bytes=len(data) - 1)
    assert error.message.startswith("image: larger than the")


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (40, 20), "white")
    image.paste((255, 0, 0), (0, 0, 10, 20))  # a red band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data, size = normal(encoded(image, "JPEG", exif=exif, quality=95))
    assert size == (20, 40)
    out = decode(data)
    assert out.size == (20, 40)
    r, g, b, _ = out.getpixel((10, 4))  # type: ignore[misc]
    assert r > 200 and g < 60 and b < 60  # the left band is now at the top


def test_a_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (12, 12), colour) for colour in ("red", "blue", "green")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    data, size = normal(buffer.getvalue())
    assert size == (12, 12)
    assert decode(data).getpixel((6, 6)) == (255, 0, 0, 255)


def test_normalising_is_deterministic() -> None:
    data = encoded(Image.new("RGB", (30, 30), "teal"), "JPEG")
    assert normal(data) == normal(data)


def test_masks_must_match_the_image_size() -> None:
    check_mask((64, 48), (64, 48))
    with pytest.raises(InvalidRequest) as caught:
        check_mask((64, 48), (48, 64))
    assert caught.value.field == "mask"
    assert caught.value.message == (
        "mask: 64x48 does not match the image's 48x64; they must be the same size"
    )
