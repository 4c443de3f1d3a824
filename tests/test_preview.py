"""The preview backend draws real, deterministic, prompt- and style-driven PNGs."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from darkroom.engine.base import BackendError, RenderRequest, StyleHint
from darkroom.engine.preview import COMPOSITIONS, PreviewBackend, encode_png, render_image

GENERAL = StyleHint("general", ("#4c6ef5", "#15aabf", "#f59f00", "#f8f9fa", "#212529"), "scatter")
WHITE = StyleHint("white", ("#ffffff", "#ffffff", "#ffffff"), "mosaic")
SRC = Path(__file__).resolve().parents[1] / "src"


def request(**changes: object) -> RenderRequest:
    base = RenderRequest(
        project_id="proj_1",
        model="flux-schnell",
        prompt="a red fox jumping over a frozen lake at dawn",
        user_prompt="a red fox jumping over a frozen lake at dawn",
        style=GENERAL,
        width=320,
        height=320,
        count=1,
        seed=7,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def render(**changes: object) -> list[bytes]:
    return PreviewBackend().render(request(**changes))


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def picture(**changes: object) -> Image.Image:
    return decode(render(**changes)[0])


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel, 0..255."""
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def test_backend_identity() -> None:
    assert PreviewBackend.name == "preview"
    assert COMPOSITIONS == (
        "radial",
        "horizon",
        "grid",
        "stripes",
        "scatter",
        "centered",
        "mosaic",
        "waves",
    )


@pytest.mark.parametrize(
    ("width", "height"),
    [(640, 640), (1024, 1024), (1024, 576), (576, 1024), (640, 368), (16, 16), (17, 301)],
)
def test_images_are_png_of_the_exact_size(width: int, height: int) -> None:
    data = render(width=width, height=height)[0]
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = decode(data)
    assert image.format == "PNG"
    assert image.mode == "RGB"
    assert image.size == (width, height)


def test_a_4k_image_works() -> None:
    image = picture(width=4096, height=4096, style=dataclasses.replace(GENERAL, composition="grid"))
    assert image.size == (4096, 4096)


@pytest.mark.parametrize("count", [1, 2, 4])
def test_count_images_each_with_its_own_seed(count: int) -> None:
    images = render(count=count, seed=100)
    assert len(images) == count
    assert len(set(images)) == count
    for i, data in enumerate(images):
        assert data == render(count=1, seed=100 + i)[0]


def test_the_same_request_gives_identical_bytes() -> None:
    assert render() == render()
    # project_id is not part of the picture
    assert render(project_id="proj_other") == render()


def test_the_bytes_are_stable_across_processes() -> None:
    script = (
        "import hashlib, sys\n"
        "from darkroom.engine.base import RenderRequest, StyleHint\n"
        "from darkroom.engine.preview import PreviewBackend\n"
        "style = StyleHint('general', ('#4c6ef5', '#15aabf', '#f59f00', '#f8f9fa', '#212529'),"
        " 'scatter')\n"
        "prompt = 'a red fox jumping over a frozen lake at dawn'\n"
        "r = RenderRequest('proj_1', 'flux-schnell', prompt, prompt, style, 320, 320, 2, 7)\n"
        "print(' '.join(hashlib.sha256(b).hexdigest() for b in PreviewBackend().render(r)))\n"
    )
    here = " ".join(hashlib.sha256(b).hexdigest() for b in render(count=2))
    for hash_seed in ("1", "2"):  # a different str hash salt in each child
        child = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(SRC), "PYTHONHASHSEED": hash_seed},
        )
        assert child.stdout.strip() == here


@pytest.mark.parametrize("composition", COMPOSITIONS)
def test_different_prompts_give_clearly_different_pictures(composition: str) -> None:
    style = dataclasses.replace(GENERAL, composition=composition)
    a = picture(prompt="a cat sleeping on a windowsill", style=style)
    b = picture(prompt="a dog running on the beach", style=style)
    # Measured: 16 (scatter) to 80 (mosaic) for these two prompts; a changed caption alone is < 1.
    assert mean_difference(a, b) > 8


@pytest.mark.parametrize("composition", COMPOSITIONS)
def test_different_seeds_give_different_pictures(composition: str) -> None:
    style = dataclasses.replace(GENERAL, composition=composition)
    assert mean_difference(picture(style=style, seed=1), picture(style=style, seed=2)) > 8


@pytest.mark.parametrize("composition", COMPOSITIONS)
def test_the_palette_decides_the_colours(composition: str) -> None:
    reds = StyleHint("reds", ("#b3261e", "#e8554e", "#ff8a80", "#7f0000", "#ffcdd2"), composition)
    blues = StyleHint("blues", ("#1e3ab3", "#4e6ee8", "#80a8ff", "#00007f", "#d2dcff"), composition)
    red_r, _, red_b = ImageStat.Stat(picture(style=reds)).mean
    blue_r, _, blue_b = ImageStat.Stat(picture(style=blues)).mean
    assert red_r > red_b + 40
    assert blue_b > blue_r + 40


def test_an_empty_palette_uses_colours_from_the_prompt() -> None:
    style = StyleHint("none", (), "radial")
    a = picture(style=style, prompt="neon city at night")
    b = picture(style=style, prompt="quiet meadow in spring")
    assert a.size == (320, 320)
    assert mean_difference(a, b) > 8


def test_malformed_palette_entries_are_ignored() -> None:
    style = StyleHint("odd", ("not a colour", "#12345", "#00ff00"), "centered")
    assert picture(style=style).size == (320, 320)


@pytest.mark.parametrize("composition", [*COMPOSITIONS, "no-such-layout", ""])
def test_every_composition_renders(composition: str) -> None:
    image = picture(style=dataclasses.replace(GENERAL, composition=composition))
    assert image.size == (320, 320)
    # A real picture, not a flat fill: several distinct colours above the banner.
    art = image.crop((0, 0, 320, 250))
    assert len(art.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 8


def test_the_preview_banner_is_drawn_over_the_bottom() -> None:
    image = picture(width=640, height=640, style=WHITE).convert("L")
    # Above the banner the all-white palette leaves the picture white ...
    assert ImageStat.Stat(image.crop((0, 0, 640, 500))).mean[0] > 240
    # ... the banner (the bottom 14 %) darkens it, edge to edge ...
    assert ImageStat.Stat(image.crop((0, 600, 40, 640))).mean[0] < 100
    assert ImageStat.Stat(image.crop((600, 600, 640, 640))).mean[0] < 100
    # ... and the word PREVIEW is written in white across its middle.
    title = ImageStat.Stat(image.crop((200, 558, 440, 588)))
    assert title.extrema[0][0] < 100
    assert title.extrema[0][1] > 230


def test_the_banner_repeats_the_user_prompt_and_nothing_else_changes() -> None:
    a = picture(width=640, height=640, user_prompt="a red fox")
    b = picture(width=640, height=640, user_prompt="a blue whale")
    box = ImageChops.difference(a, b).getbbox()
    assert box is not None
    assert box[1] >= 550  # only the caption line, inside the banner, differs
    c = picture(width=640, height=640, model="seedream-v4")
    assert ImageChops.difference(a, c).getbbox() is not None


def test_long_and_non_ascii_prompts_are_fine() -> None:
    image = picture(width=640, height=368, user_prompt="Ünïcödé 日本語 prompt " * 20)
    assert image.size == (640, 368)


@pytest.mark.parametrize(
    "changes",
    [
        {"width": 15},
        {"height": 15},
        {"width": 8193},
        {"height": 10_000},
        {"width": 0},
        {"count": 0},
        {"count": -1},
    ],
)
def test_invalid_sizes_are_refused(changes: dict[str, int]) -> None:
    with pytest.raises(BackendError) as caught:
        render(**changes)
    assert caught.value.code == "invalid_size"


def test_encode_png_round_trips_the_pixels() -> None:
    image = render_image(request(width=333, height=517))
    decoded = decode(encode_png(image))
    assert decoded.mode == "RGB"
    assert decoded.size == (333, 517)
    assert decoded.tobytes() == image.tobytes()


# --------------------------------------------------------------------------------------------
# Edits: request.sources and request.mask


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def halves(size: tuple[int, int] = (64, 64)) -> Image.Image:
    """Solid red on the left half, solid blue on the right."""
    image = Image.new("RGB", size, (255, 0, 0))
    image.paste((0, 0, 255), (size[0] // 2, 0, *size))
    return image


def noisy(size: tuple[int, int]) -> Image.Image:
    return Image.frombytes("RGB", size, random.Random(3).randbytes(size[0] * size[1] * 3))


def redness(image: Image.Image) -> float:
    r, _, b = ImageStat.Stat(image).mean
    return r - b


EDIT = {"width": 128, "height": 128}
ART = (0, 0, 128, 80)  # above the banner, which covers the bottom 42 rows at 128 x 128


def test_the_preview_backend_edits() -> None:
    assert PreviewBackend.edits is True


def test_plain_renders_are_what_they_were_before_edits() -> None:
    from darkroom.engine import preview

    for style in (GENERAL, WHITE, dataclasses.replace(GENERAL, composition="nope")):
        req = request(style=style, width=200, height=120)
        # The path render_image took before edits existed, step by step.
        scene = preview._scene(req)
        layout = preview._LAYOUTS.get(style.composition, preview._LAYOUTS["scatter"])
        before = layout(scene)
        preview._stamp(before, req, scene.palette[1])
        assert render_image(req).tobytes() == before.tobytes()
        assert render(style=style, width=200, height=120) == [encode_png(before)]


def test_an_edit_without_a_mask_keeps_the_source_recognisable() -> None:
    image = picture(sources=(png(halves()),), **EDIT)
    assert image.size == (128, 128)
    assert image.mode == "RGB"
    left, right = image.crop((0, 0, 56, 80)), image.crop((72, 0, 128, 80))
    assert redness(left) - redness(right) > 150
    # ... and it is not the source alone: the new picture shows through.
    assert mean_difference(image.crop(ART), halves((128, 128)).crop(ART)) > 20
    assert mean_difference(image, picture(**EDIT)) > 20


def test_an_edit_with_a_mask_changes_only_the_transparent_part() -> None:
    source = noisy((128, 128))
    mask = Image.new("RGBA", (128, 128), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (32, 16, 80, 64))  # edit this square only
    image = picture(sources=(png(source),), mask=png(mask), **EDIT)
    outside = source.copy()
    outside.paste(image.crop((32, 16, 80, 64)), (32, 16))
    assert image.crop(ART).tobytes() == outside.crop(ART).tobytes()
    assert mean_difference(image.crop((32, 16, 80, 64)), source.crop((32, 16, 80, 64))) > 30
    # The new picture fills the square: the same pixels as in a plain render.
    plain = render_image(request(**EDIT))
    assert image.crop((40, 24, 72, 56)).tobytes() == plain.crop((40, 24, 72, 56)).tobytes()


def test_the_banner_is_stamped_over_an_edit() -> None:
    source = png(Image.new("RGB", (64, 64), (255, 255, 255)))
    opaque = png(Image.new("RGBA", (64, 64), (0, 0, 0, 255)))
    image = picture(sources=(source,), mask=opaque, **EDIT).convert("L")
    assert ImageStat.Stat(image.crop(ART)).mean[0] == 255  # the source, untouched
    assert ImageStat.Stat(image.crop((0, 110, 20, 128))).mean[0] < 100


def test_sources_are_scaled_to_cover_and_centre_cropped() -> None:
    # A wide source on a tall canvas: the middle of it fills the canvas.
    wide = Image.new("RGB", (300, 100), (0, 200, 0))
    wide.paste((255, 0, 0), (0, 0, 100, 100))
    wide.paste((0, 0, 255), (200, 0, 300, 100))
    opaque = png(Image.new("RGBA", (300, 100), (0, 0, 0, 255)))
    image = picture(sources=(png(wide),), mask=opaque, width=64, height=128)
    assert image.size == (64, 128)
    r, g, b = ImageStat.Stat(image.crop((0, 0, 64, 80))).mean
    assert g > 190 and r < 10 and b < 10


def test_transparent_parts_of_a_source_show_the_new_picture() -> None:
    clear = png(Image.new("RGBA", (64, 64), (255, 0, 0, 0)))
    opaque = png(Image.new("RGBA", (64, 64), (0, 0, 0, 255)))
    image = picture(sources=(clear,), mask=opaque, **EDIT)
    assert image.tobytes() == picture(**EDIT).tobytes()


def test_further_sources_do_not_outweigh_the_first() -> None:
    first, second = png(halves()), png(Image.new("RGB", (64, 64), (0, 255, 0)))
    one = picture(sources=(first,), **EDIT)
    two = picture(sources=(first, second, second), **EDIT)
    assert one.tobytes() != two.tobytes()  # the others are shown ...
    assert mean_difference(one, two) < 15  # ... but small
    left, right = two.crop((0, 0, 56, 80)), two.crop((72, 0, 128, 80))
    assert redness(left) - redness(right) > 100


def test_edits_are_deterministic_and_each_image_has_its_own_seed() -> None:
    sources = (png(halves()),)
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 32, 32))
    for changes in ({"sources": sources}, {"sources": sources, "mask": png(mask)}):
        images = render(count=3, seed=40, **changes, **EDIT)
        assert images == render(count=3, seed=40, **changes, **EDIT)
        assert len(set(images)) == 3
        for i, data in enumerate(images):
            assert data == render(count=1, seed=40 + i, **changes, **EDIT)[0]


def test_a_mask_without_sources_is_ignored() -> None:
    mask = png(Image.new("RGBA", (128, 128), (0, 0, 0, 0)))
    assert render(mask=mask, **EDIT) == render(**EDIT)


@pytest.mark.parametrize(
    "sources",
    [
        (b"not an image",),
        (b"",),
        (png(halves())[:100],),  # truncated
        (png(halves()), b"\x89PNG\r\n\x1a\n broken"),
    ],
)
def test_invalid_sources_are_refused(sources: tuple[bytes, ...]) -> None:
    with pytest.raises(BackendError) as caught:
        render(sources=sources, **EDIT)
    assert caught.value.code == "invalid_source"
    assert caught.value.message == f"source image {len(sources)} is not a readable PNG image"


def test_an_invalid_mask_is_refused() -> None:
    with pytest.raises(BackendError) as caught:
        render(sources=(png(halves()),), mask=b"not a mask", **EDIT)
    assert caught.value.code == "invalid_mask"


def test_sources_are_left_out_of_the_request_repr() -> None:
    text = repr(request(sources=(b"x" * 1000,), mask=b"y" * 1000))
    assert "xxxx" not in text
    assert "yyyy" not in text
