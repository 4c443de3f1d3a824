"""Every model family of the diffusers backend, driven directly (no server): tiny pipelines of the
real diffusers classes with random weights (tests/tiny_pipelines.py), loaded from disk by the
backend and rendered on the CPU.

Random weights make noise, so what is checked is what a caller relies on whatever the weights:
sizes, that each input (prompt seed, every source, the mask) changes the output, that the
unmasked part of an inpainted image is the source's, that image ``i`` depends on ``seed + i``
alone, that a cancel stops at the next step, and that a family refuses what it cannot do.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from darkroom.engine.base import BackendError, RenderCanceled, RenderRequest, Step, StyleHint
from darkroom.engine.diffusers_backend import (
    DiffusersBackend,
    known_family,
    model_capabilities,
    weights_status,
)
from darkroom.engine.families import FAMILIES, Mode, by_name
from darkroom.engine.weights import WeightsEntry
from tests.tiny_pipelines import built

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the hub

WIDTH, HEIGHT = 128, 64  # multiples of 32: the tiny Qwen-Image VAEs scale by 16
GENERATORS = ["flux", "flux2-klein", "zimage", "qwen-image", "krea2", "sdxl"]
INPAINTERS = ["flux", "flux2-klein", "zimage", "sdxl"]
IMAGE_TO_IMAGE = ["flux", "zimage", "sdxl"]


@pytest.fixture(scope="module", autouse=True)
def _quiet() -> Iterator[None]:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()
    yield


_BACKENDS: dict[str, DiffusersBackend] = {}


def backend(kind: str) -> DiffusersBackend:
    """One backend per family for the whole module: each tiny model is loaded once."""
    if kind not in _BACKENDS:
        entry = WeightsEntry(
            source=str(built(kind)), family=kind, steps=2, guidance=1.0, max_sequence_length=64
        )
        _BACKENDS[kind] = DiffusersBackend({kind: entry}, device="cpu")
    return _BACKENDS[kind]


def request(kind: str, **fields: Any) -> RenderRequest:
    values: dict[str, Any] = {
        "project_id": "img_test",
        "model": kind,
        "prompt": "a lighthouse at dusk",
        "user_prompt": "a lighthouse at dusk",
        "style": StyleHint("general", (), "scatter"),
        "width": WIDTH,
        "height": HEIGHT,
        "count": 1,
        "seed": 1,
    }
    values.update(fields)
    return RenderRequest(**values)


def render(kind: str, **fields: Any) -> list[np.ndarray[Any, Any]]:
    return [pixels(data) for data in backend(kind).render(request(kind, **fields))]


def pixels(data: bytes) -> np.ndarray[Any, Any]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB")).astype(int)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def picture(seed: int, size: tuple[int, int] = (WIDTH, HEIGHT)) -> bytes:
    """A source image: random blocks of colour (as core hands them over: an RGBA PNG)."""
    blocks = np.random.RandomState(seed).randint(0, 255, (4, 8, 3), dtype=np.uint8)
    image = Image.fromarray(blocks).resize(size, Image.Resampling.NEAREST).convert("RGBA")
    return png(image)


def left_half_mask(size: tuple[int, int] = (WIDTH, HEIGHT)) -> bytes:
    """OpenAI's convention: transparent where the image changes (the left half)."""
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))
    return png(mask)


def close(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    """Equal up to float rounding (a batch of two runs other kernels than a batch of one)."""
    difference = np.abs(a - b)
    return bool(difference.max() <= 3 and difference.mean() < 0.1)


# -- what each family can do ---------------------------------------------------------------------


def test_the_capabilities_of_each_family() -> None:
    table = {name: family.capabilities.as_dict() for name, family in FAMILIES.items()}
    assert table["flux2-klein"] == {
        "generate": True,
        "edit": True,
        "references": 4,
        "mask": True,
        "strength": True,
    }
    assert table["qwen-edit"]["generate"] is False and table["qwen-edit"]["references"] == 3
    assert table["krea2"]["edit"] is False and table["krea2"]["references"] == 0
    assert {name for name, can in table.items() if can["mask"]} == set(INPAINTERS)
    # every family's pipelines exist in the installed diffusers
    import diffusers

    for family in FAMILIES.values():
        for name in (*family.pipeline_classes, *family.mode_classes.values()):
            assert hasattr(diffusers, name), name
    with pytest.raises(ValueError, match="unknown model family 'flux3'"):
        WeightsEntry(source="x/y", family="flux3")


def test_the_family_of_a_directory_is_read_from_its_model_index() -> None:
    assert known_family(WeightsEntry(source=str(built("flux2-klein")))) is by_name("flux2-klein")
    assert known_family(WeightsEntry(source="owner/repo")) is None  # a hub id: not without it
    assert known_family(WeightsEntry(source="owner/repo", family="krea2")) is by_name("krea2")
    capped = model_capabilities(
        WeightsEntry(source="owner/repo", family="qwen-edit", max_sources=2)
    )
    assert capped is not None and capped.references == 2 and capped.generate is False
    assert model_capabilities(WeightsEntry(source="owner/repo")) is None


@pytest.mark.parametrize("kind", GENERATORS)
def test_each_family_generates_and_image_i_is_seed_plus_i(kind: str) -> None:
    first, second = render(kind, count=2, seed=5)
    assert first.shape == second.shape == (HEIGHT, WIDTH, 3)
    assert first.std() > 1 and second.std() > 1  # pictures, not blank frames
    assert not np.array_equal(first, second)
    (alone,) = render(kind, count=1, seed=6)
    assert close(second, alone)  # the pair's second image is seed 6's
    assert np.array_equal(render(kind, seed=5)[0], render(kind, seed=5)[0])


def test_a_size_off_the_family_multiple_is_rendered_larger_and_cropped_back() -> None:
    (image,) = render("qwen-image", width=112, height=80)  # Qwen-Image here: multiples of 32
    assert image.shape == (80, 112, 3)


@pytest.mark.parametrize("kind", IMAGE_TO_IMAGE)
def test_image_to_image_follows_the_source_and_the_strength(kind: str) -> None:
    steps: list[Step] = []
    source = picture(1)
    edited = render(kind, sources=(source,), strength=0.5, on_step=steps.append)[0]
    assert edited.shape == (HEIGHT, WIDTH, 3)
    assert [s.index for s in steps] == [0]  # 2 steps x strength 0.5: one denoising step
    assert not close(edited, render(kind)[0])  # not the generation of that seed
    assert not close(edited, render(kind, sources=(picture(2),), strength=0.5)[0])
    assert not close(edited, render(kind, sources=(source,), strength=1.0)[0])
    # a strength too low for the steps still runs one step rather than failing
    steps.clear()
    render(kind, sources=(source,), strength=0.1, on_step=steps.append)
    assert len(steps) == 1
    # image i is seed + i's, with a source too
    _, second = render(kind, sources=(source,), strength=0.5, count=2, seed=1)
    assert close(second, render(kind, sources=(source,), strength=0.5, seed=2)[0])


@pytest.mark.parametrize("kind", INPAINTERS)
def test_inpainting_changes_only_the_masked_part(kind: str) -> None:
    source = picture(3)
    original = pixels(source)
    first, second = render(kind, sources=(source,), mask=left_half_mask(), count=2, seed=8)
    half = WIDTH // 2
    for image in (first, second):
        assert image.shape == (HEIGHT, WIDTH, 3)
        assert np.array_equal(image[:, half:], original[:, half:])  # opaque: kept exactly
        assert np.abs(image[:, :half] - original[:, :half]).mean() > 5  # transparent: new
    assert not np.array_equal(first[:, :half], second[:, :half])
    (alone,) = render(kind, sources=(source,), mask=left_half_mask(), seed=9)
    assert close(second, alone)  # with sources too, image i is seed + i's


def test_a_source_of_another_shape_is_fitted_without_distortion() -> None:
    """An edit of a 2:1 picture into a square keeps the picture's centre, unstretched."""
    source = Image.new("RGB", (256, 128), "black")
    source.paste((250, 250, 250), (56, 0, 200, 128))  # white over the middle (and a bit)
    (image,) = render(
        "flux", sources=(png(source),), mask=left_half_mask((64, 64)), width=64, height=64
    )
    right = image[:, 32:]
    assert (right > 200).all()  # centre-cropped: the kept half is all white square, not squeezed


@pytest.mark.parametrize("kind", ["flux2-klein", "qwen-image"])
def test_every_reference_counts(kind: str) -> None:
    one, two, three = picture(4), picture(5), picture(6, (96, 160))  # the third is portrait
    base = render(kind, sources=(one, two, three))[0]
    assert base.shape == (HEIGHT, WIDTH, 3)
    assert np.array_equal(base, render(kind, sources=(one, two, three))[0])  # deterministic,
    # so any difference below is the input's (random weights: some differ by little)
    assert not np.array_equal(base, render(kind, sources=(one, two, picture(7, (96, 160))))[0])
    assert not np.array_equal(base, render(kind, sources=(two, one, three))[0])  # order counts
    assert not close(base, render(kind)[0])


def test_klein_inpaints_with_references_too() -> None:
    """A mask and several sources: the first is changed where the mask says, the others are
    references for the change."""
    source, mask = picture(3), left_half_mask()
    alone = render("flux2-klein", sources=(source,), mask=mask)[0]
    referenced = render("flux2-klein", sources=(source, picture(9)), mask=mask)[0]
    half = WIDTH // 2
    assert np.array_equal(referenced[:, half:], pixels(source)[:, half:])
    assert not np.array_equal(referenced[:, :half], alone[:, :half])


def test_references_are_sized_within_the_budget_at_their_own_aspect() -> None:
    from darkroom.engine.sources import within

    wide = Image.new("RGB", (3000, 1000))
    width, height = within(wide, 1024 * 1024).size
    assert width % 16 == 0 and height % 16 == 0
    assert width * height <= 1024 * 1024
    # scaled to 1773x591 (a megapixel at 3:1), then cropped by less than 16 pixels a side
    assert 1773 - 16 < width <= 1773 and 591 - 16 < height <= 591
    small = Image.new("RGB", (200, 120))
    assert within(small, 1024 * 1024).size == (192, 112)  # never scaled up, cropped to /16


def test_qwen_edit_edits_by_reference_and_reproduces() -> None:
    """The slowest tiny model (it encodes each source at about 1024x1024): one test."""
    first = render("qwen-edit", sources=(picture(4), picture(5)), seed=3)[0]
    assert first.shape == (HEIGHT, WIDTH, 3) and first.std() > 1
    assert np.array_equal(first, render("qwen-edit", sources=(picture(4), picture(5)), seed=3)[0])
    assert not np.array_equal(first, render("qwen-edit", sources=(picture(4),), seed=3)[0])


def test_modes_share_the_loaded_weights() -> None:
    """from_pipe: the image-to-image and inpainting pipelines are the same modules."""
    for kind, modes in [("flux", (Mode.IMAGE, Mode.INPAINT)), ("flux2-klein", (Mode.INPAINT,))]:
        family = backend(kind).family(kind, backend(kind).weights[kind])
        loaded = family.pipeline.components
        for mode in modes:
            other = family.pipeline_for(mode)
            assert type(other).__name__ == family.mode_classes[mode]
            assert other is family.pipeline_for(mode)  # made once
            for name, component in other.components.items():
                if component is not None:
                    assert component is loaded[name], (kind, mode, name)
        assert family.pipeline_for(Mode.GENERATE) is family.pipeline


# -- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "fields", "code"),
    [
        ("krea2", {"sources": (picture(1),)}, "edits_unsupported"),
        ("qwen-edit", {}, "source_required"),
        ("qwen-image", {"sources": (picture(1),), "mask": left_half_mask()}, "mask_unsupported"),
        ("flux", {"sources": (picture(1), picture(2))}, "too_many_sources"),
        ("flux2-klein", {"sources": tuple(picture(i) for i in range(5))}, "too_many_sources"),
        ("flux", {"sources": (b"not an image",)}, "invalid_source"),
        ("flux", {"sources": (picture(1),), "mask": b"\x89PNG broken"}, "invalid_mask"),
    ],
)
def test_what_a_family_cannot_do_is_a_stable_error(
    kind: str, fields: dict[str, Any], code: str
) -> None:
    with pytest.raises(BackendError) as caught:
        backend(kind).render(request(kind, **fields))
    assert caught.value.code == code


def test_a_directory_of_another_family_is_refused_before_loading(tmp_path: Path) -> None:
    """FLUX.1 weights given for FLUX.2 [klein]: refused from model_index.json, so even broken
    weights in it are never read."""
    wrong = tmp_path / "flux"
    shutil.copytree(built("flux"), wrong)
    for weights in (wrong / "transformer").glob("*.safetensors"):
        weights.write_bytes(b"never read")
    entry = WeightsEntry(source=str(wrong), family="flux2-klein")
    dr = DiffusersBackend({"flux-2-klein": entry}, device="cpu")
    with pytest.raises(BackendError) as caught:
        dr.render(request("flux-2-klein"))
    assert caught.value.code == "weights_wrong_family"
    assert "FLUX.1 weights (FluxPipeline)" in caught.value.message
    assert "not FLUX.2 [klein] weights" in caught.value.message
    assert dr.loaded() == []
    status = weights_status(entry)
    assert status["loadable"] is False and "FLUX.1 weights" in status["detail"]
    # the same directory without a family named is served as what it is
    undeclared = DiffusersBackend({"m": WeightsEntry(source=str(built("flux")))}, device="cpu")
    assert len(undeclared.render(request("m"))) == 1


# -- cancel --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "fields"),
    [("zimage", {}), ("flux2-klein", {"sources": (picture(1),)}), ("flux", {"mask": None})],
)
def test_a_cancel_stops_at_the_next_denoising_step(kind: str, fields: dict[str, Any]) -> None:
    entry = WeightsEntry(source=str(built(kind)), steps=20, max_sequence_length=64)
    dr = DiffusersBackend({kind: entry}, device="cpu")
    steps: list[Step] = []
    if "mask" in fields:
        fields = {"sources": (picture(1),), "mask": left_half_mask(), "strength": 1.0}
    with pytest.raises(RenderCanceled):
        dr.render(
            request(
                kind,
                count=2,
                canceled=lambda: len(steps) >= 3,  # true once the third step is reported
                on_step=steps.append,
                **fields,
            )
        )
    # canceled during the fourth step: the render stopped at its end, 4 of 20 steps ran
    assert len(steps) == 3
    assert [(s.index, s.count, s.first_image, s.images) for s in steps] == [
        (i, 20, 0, 2) for i in range(3)
    ]
    assert steps[0].latents.shape[0] == 2  # the batch's latents, for previews


def test_weights_in_the_hub_cache_are_checked_for_their_family(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/v1/models says a cached hub snapshot of the wrong family is not loadable."""
    from huggingface_hub import constants

    snapshot = tmp_path / "models--owner--klein" / "snapshots" / ("0" * 40)
    shutil.copytree(built("flux"), snapshot)  # FLUX.1 weights under a klein-sounding name
    (tmp_path / "models--owner--klein" / "refs").mkdir()
    (tmp_path / "models--owner--klein" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    wrong = weights_status(WeightsEntry(source="owner/klein", family="flux2-klein"))
    assert wrong["loadable"] is False and "FLUX.1 weights" in wrong["detail"]
    right = weights_status(WeightsEntry(source="owner/klein", family="flux"))
    assert right == {
        "source": "owner/klein",
        "local": False,
        "loadable": True,
        "detail": "in the Hugging Face cache",
    }
