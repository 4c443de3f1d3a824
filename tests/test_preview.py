"""The preview backend draws real, deterministic, prompt- and style-driven PNGs."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
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
