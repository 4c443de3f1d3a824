"""The diffusers backend end to end, without downloading anything: tiny pipelines of the real
classes (FluxPipeline, ZImagePipeline, StableDiffusionXLPipeline) with random weights, saved to a
temporary directory, loaded by the real ``from_pretrained`` path and driven through the HTTP API
on the CPU. Each family's own behaviour (edits, masks, references, cancel) is tested directly in
tests/test_families.py."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
from PIL import Image

from darkroom.engine.base import RenderRequest, StyleHint
from darkroom.engine.diffusers_backend import DiffusersBackend
from darkroom.engine.weights import WeightsEntry
from tests.conftest import Account, LiveServer, ServerFactory
from tests.tiny_pipelines import built

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the hub


@pytest.fixture(scope="session")
def tiny() -> Iterator[dict[str, Path]]:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    yield {kind: built(kind) for kind in ("flux", "zimage", "sdxl")}


def override(path: Path, tiny: dict[str, Path], flux_source: Path | None = None) -> Path:
    """A catalog override: Z-Image from the tiny directory, and an SDXL-Turbo model added as an
    operator would (FLUX is pointed at its directory by the ``weights`` setting)."""
    flux = flux_source if flux_source is not None else tiny["flux"]
    path.write_text(
        f"""
[models.flux-schnell.weights]
source = "{flux}"
max_sequence_length = 64

[models.z-image-turbo.weights]
source = "{tiny["zimage"]}"
max_sequence_length = 64

[models.sdxl-turbo]
title = "SDXL-Turbo"
credits_per_image = 2
resolutions = ["640px"]
tiers = ["free", "creator", "pro", "business"]
image_counts = [1, 2]
backend = "diffusers"
weights = {{ source = "{tiny["sdxl"]}", steps = 1, guidance = 0.0 }}
"""
    )
    return path


@pytest.fixture
def real(server_factory: ServerFactory, tiny: dict[str, Path], tmp_path: Path) -> LiveServer:
    """darkroom serving the catalog's models on the diffusers backend (tiny weights, CPU)."""
    return server_factory(
        preview_only=False,
        catalog=override(tmp_path / "catalog.toml", tiny),
        weights={"flux-schnell": str(tiny["flux"])},
        device="cpu",
    )


def create(server: LiveServer, account: Account, **body: Any) -> dict[str, Any]:
    request = {"image_count": 1, "resolution": "640px", "style": {"prompt": "a lighthouse"}}
    request.update(body)
    with server.client(account) as http:
        answer = http.post("/v1/ai-image-generator", json=request)
    assert answer.status_code == 200, answer.text
    return server.wait(account, answer.json()["id"], timeout=120)


def images(server: LiveServer, project: dict[str, Any]) -> list[bytes]:
    with server.client() as http:
        return [http.get(item["url"]).content for item in project["downloads"]]


def pixels(data: bytes) -> np.ndarray[Any, Any]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize(
    ("model", "ratio", "size"),
    [
        ("flux-schnell", "16:9", (640, 368)),
        ("z-image-turbo", "1:1", (640, 640)),
        ("sdxl-turbo", "9:16", (368, 640)),
    ],
)
def test_each_pipeline_renders_projects_through_the_api(
    real: LiveServer, model: str, ratio: str, size: tuple[int, int]
) -> None:
    account = real.account()
    project = create(
        real,
        account,
        model=model,
        aspect_ratio=ratio,
        image_count=2,
        style={"prompt": "a lighthouse", "tool": "ai-anime-generator"},
    )
    assert project["status"] == "complete", project["error"]
    assert project["backend"] == "diffusers"
    assert project["final_prompt"].startswith("anime style illustration of a lighthouse")
    assert project["status_reason"] is None
    first, second = (pixels(data) for data in images(real, project))
    assert first.shape == second.shape == (size[1], size[0], 3)
    assert first.std() > 1 and second.std() > 1  # real pictures, not blank frames
    assert not np.array_equal(first, second)  # image i has its own seed
    price = 2 if model == "sdxl-turbo" else 5
    assert real.balance(account) == 10_000 - 2 * price


def test_seeds_are_reproducible_and_recorded(real: LiveServer) -> None:
    account = real.account()
    one = create(real, account, model="flux-schnell", seed=5)
    again = create(real, account, model="flux-schnell", seed=5)
    pair = create(real, account, model="flux-schnell", seed=4, image_count=2)
    unseeded = create(real, account, model="flux-schnell")
    assert one["seed"] == 5
    assert isinstance(unseeded["seed"], int)  # the seed used is recorded
    digest = [hashlib.sha256(data).hexdigest() for data in images(real, one)]
    assert digest == [hashlib.sha256(data).hexdigest() for data in images(real, again)]
    # image i of a project is seed + i whatever the batch: the pair's second image is seed 5's
    # (equal up to float rounding: a batch of two runs other kernels than a batch of one)
    _, second = images(real, pair)
    difference = np.abs(pixels(second).astype(int) - pixels(images(real, one)[0]).astype(int))
    assert difference.max() <= 2
    assert difference.mean() < 0.05
    assert not np.array_equal(pixels(images(real, unseeded)[0]), pixels(images(real, one)[0]))


def test_the_openai_dialect_runs_on_the_same_backend(real: LiveServer) -> None:
    account = real.account()
    client = openai.OpenAI(api_key=account.key, base_url=f"{real.url}/v1", max_retries=0)
    result = client.images.generate(
        prompt="a red bicycle", model="dall-e-2", size="256x256", response_format="b64_json"
    )
    import base64

    assert result.data is not None
    image = pixels(base64.b64decode(result.data[0].b64_json or ""))
    assert image.shape == (256, 256, 3)
    # The diffusers backend only generates: an edit is refused before anything is charged.
    with pytest.raises(openai.BadRequestError, match="edit"):
        client.images.edit(image=_png_file(), prompt="x", model="flux-schnell")
    assert real.balance(account) == 10_000 - 5


def _png_file() -> tuple[str, bytes, str]:
    buffer = io.BytesIO()
    Image.new("RGB", (256, 256), "white").save(buffer, format="PNG")
    return ("source.png", buffer.getvalue(), "image/png")


def test_missing_weights_fail_the_job_with_a_refund(
    server_factory: ServerFactory, tiny: dict[str, Path], tmp_path: Path
) -> None:
    server = server_factory(
        preview_only=False,
        catalog=override(tmp_path / "catalog.toml", tiny, flux_source=tmp_path / "nowhere"),
        device="cpu",
    )
    account = server.account()
    project = create(server, account, model="flux-schnell", image_count=2)
    assert project["status"] == "error"
    assert project["error"]["code"] == "weights_not_found"
    assert "nowhere" in project["error"]["message"]
    assert project["credits_charged"] == 0
    assert server.balance(account) == 10_000
    with server.client(account) as http:
        listed = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    assert listed["flux-schnell"]["weights"] == {"source": "local directory", "loadable": False}
    assert listed["z-image-turbo"]["weights"] == {"source": "local directory", "loadable": True}


def test_broken_weights_fail_the_job_with_a_refund(
    server_factory: ServerFactory, tiny: dict[str, Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny["flux"], broken)
    for weights in (broken / "transformer").glob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file")
    server = server_factory(
        preview_only=False,
        catalog=override(tmp_path / "catalog.toml", tiny, flux_source=broken),
        device="cpu",
    )
    account = server.account()
    project = create(server, account, model="flux-schnell")
    assert project["status"] == "error"
    assert project["error"]["code"] == "weights_invalid"
    assert server.balance(account) == 10_000
    # the other models on the same backend are unaffected
    assert create(server, account, model="z-image-turbo")["status"] == "complete"


def test_loading_is_reported_once_and_the_pipeline_stays_resident(
    tiny: dict[str, Path],
) -> None:
    entry = WeightsEntry(source=str(tiny["flux"]), steps=2, max_sequence_length=64)
    backend = DiffusersBackend({"flux-schnell": entry}, device="cpu")
    notes: list[str | None] = []
    request = RenderRequest(
        project_id="img_test",
        model="flux-schnell",
        prompt="a cat",
        user_prompt="a cat",
        style=StyleHint("general", (), "scatter"),
        width=128,
        height=64,
        count=3,
        seed=1,
        report=notes.append,
    )
    first = backend.render(request)
    assert notes == ["loading the flux-schnell weights", None]
    assert backend.loaded() == ["flux-schnell"]
    second = backend.render(request)
    assert notes == ["loading the flux-schnell weights", None]  # not loaded again
    assert first == second
    assert len(first) == 3
    assert Image.open(io.BytesIO(first[0])).size == (128, 64)


def test_weights_not_on_this_machine_fail_without_hanging(server_factory: ServerFactory) -> None:
    """The shipped catalog names hub ids; with no hub and no cache the job ends in error."""
    server = server_factory(preview_only=False, device="cpu")
    account = server.account()
    project = create(server, account, model="z-image-turbo")
    assert project["status"] == "error"
    assert project["error"]["code"] == "weights_not_found"
    assert "Tongyi-MAI/Z-Image-Turbo" in project["error"]["message"]
    assert server.balance(account) == 10_000


def test_auto_resolution_renders_the_largest_size_the_tier_allows(real: LiveServer) -> None:
    """A business account's default (``auto``) is 2k: the pipeline renders 2048x2048."""
    account = real.account()
    with real.client(account) as http:
        answer = http.post(
            "/v1/ai-image-generator",
            json={"image_count": 1, "model": "z-image-turbo", "style": {"prompt": "a fox"}},
        )
    project = real.wait(account, answer.json()["id"], timeout=300)
    assert project["status"] == "complete", project["error"]
    assert pixels(images(real, project)[0]).shape == (2048, 2048, 3)
