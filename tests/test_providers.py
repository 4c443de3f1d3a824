"""The hosted models through their vendors' APIs (fakes of them on loopback,
tests/vendor_fakes.py), through the real server and the real clients: what each vendor receives,
what the caller gets, and that every upstream failure ends in ``error`` with a refund and a
message that carries no key."""

from __future__ import annotations

import base64
import io
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from magic_hour import Client as MagicHour
from openai import OpenAI
from PIL import Image

import darkroom
from darkroom.engine.base import BackendError, RenderRequest, StyleHint
from darkroom.engine.providers.base import ProviderBackend
from darkroom.engine.providers.gemini import Gemini
from darkroom.engine.providers.openai import OpenAI as OpenAIVendor
from darkroom.engine.providers.seedream import Seedream, size_for
from darkroom.engine.upstream import UpstreamEntry
from tests.conftest import Account, LiveServer, ServerFactory
from tests.test_admin import admin_client
from tests.test_cli_client import darkroom as darkroom_cli
from tests.vendor_fakes import FakeGemini, FakeOpenAI, FakeSeedream, catalog_override
from tests.waiting import wait_until

KEYS = {"OPENAI": "sk-test-openai-0451", "GEMINI": "gm-test-gemini-0451", "ARK": "ark-test-0451"}


@pytest.fixture
def fakes() -> Iterator[dict[str, Any]]:
    started = {
        "openai": FakeOpenAI(KEYS["OPENAI"]),
        "gemini": FakeGemini(KEYS["GEMINI"]),
        "seedream": FakeSeedream(KEYS["ARK"]),
    }
    yield started
    for fake in started.values():
        fake.stop()


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_OPENAI_KEY", KEYS["OPENAI"])
    monkeypatch.setenv("TEST_GEMINI_KEY", KEYS["GEMINI"])
    monkeypatch.setenv("TEST_ARK_KEY", KEYS["ARK"])


@pytest.fixture
def start(
    server_factory: ServerFactory, fakes: dict[str, Any], tmp_path: Path
) -> Callable[..., LiveServer]:
    def started(*, timeout: float = 10, retries: int = 2, **settings: Any) -> LiveServer:
        catalog = catalog_override(
            fakes, tmp_path / "catalog.toml", timeout=timeout, retries=retries, env_prefix="TEST"
        )
        return server_factory(preview_only=False, catalog=catalog, device="cpu", **settings)

    return started


def create(server: LiveServer, account: Account, model: str, count: int = 1) -> dict[str, Any]:
    body = {"image_count": count, "model": model, "style": {"prompt": "a red lighthouse"}}
    with server.client(account) as client:
        response = client.post("/v1/ai-image-generator", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def ended(server: LiveServer, account: Account, model: str, count: int = 1) -> dict[str, Any]:
    return server.wait(account, create(server, account, model, count)["id"])


def png_of(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image


@pytest.mark.usefixtures("keys")
def test_each_vendor_renders_through_the_magic_hour_sdk(
    start: Callable[..., LiveServer], fakes: dict[str, Any], tmp_path: Path
) -> None:
    server = start()
    account = server.account(credits=10_000)
    client = MagicHour(token=account.key, base_url=server.url)
    for model, vendor in (
        ("gpt-image-2", "openai"),
        ("nano-banana", "gemini"),
        ("seedream-v4", "seedream"),
    ):
        out = tmp_path / model
        out.mkdir()
        result = client.v1.ai_image_generator.generate(
            image_count=2,
            aspect_ratio="16:9",
            style={"prompt": "a red lighthouse"},
            model=model,  # type: ignore[arg-type]
            download_outputs=True,
            download_directory=str(out),
        )
        assert result.status == "complete", model
        project = server.wait(account, result.id)
        assert project["backend"] == vendor
        for path in result.downloaded_paths or []:
            image = png_of(Path(path).read_bytes())
            assert image.size == (project["width"], project["height"])
        assert len(result.downloaded_paths or []) == 2
    # What each vendor received, as its API documents it.
    generation = fakes["openai"].requests[-1]
    assert generation.path.endswith("/images/generations")
    assert generation.headers["authorization"] == f"Bearer {KEYS['OPENAI']}"
    assert generation.json["model"] == "gpt-image-2" and generation.json["n"] == 2
    # the project's 4k 16:9 (4096x2304) as large as GPT Image 2 takes: 3840x2160
    assert generation.json["size"] == "3840x2160"
    gemini = fakes["gemini"].requests
    assert len(gemini) == 2  # one image per call
    assert gemini[-1].path == "/v1beta/models/gemini-2.5-flash-image:generateContent"
    assert gemini[-1].headers["x-goog-api-key"] == KEYS["GEMINI"]
    config = gemini[-1].json["generationConfig"]
    assert config["responseModalities"] == ["IMAGE"]
    assert config["imageConfig"]["aspectRatio"] == "16:9"
    seedream = fakes["seedream"].requests
    assert len(seedream) == 2
    assert seedream[-1].json["model"] == "seedream-4-0-250828"
    assert seedream[-1].json["response_format"] == "b64_json"
    w, h = (int(v) for v in seedream[-1].json["size"].split("x"))
    assert w * h >= 1280 * 720 and abs(w / h - 16 / 9) < 0.02


@pytest.mark.usefixtures("keys")
def test_the_openai_dialect_generates_and_edits_through_each_vendor(
    start: Callable[..., LiveServer], fakes: dict[str, Any]
) -> None:
    server = start()
    account = server.account(credits=10_000)
    client = OpenAI(api_key=account.key, base_url=f"{server.url}/v1", max_retries=0)
    made = client.images.generate(
        prompt="a blue door", model="gpt-image-2", size="1024x1024", response_format="b64_json"
    )
    assert png_of(base64.b64decode(made.data[0].b64_json or "")).size == (1024, 1024)
    source = io.BytesIO()
    Image.new("RGB", (256, 256), (255, 0, 0)).save(source, format="PNG")
    for model, fake in (
        ("gpt-image-2", "openai"),
        ("nano-banana", "gemini"),
        ("seedream-v4", "seedream"),
    ):
        edited = client.images.edit(
            image=("red.png", source.getvalue(), "image/png"),
            prompt="make it blue",
            model=model,
            response_format="b64_json",
        )
        assert png_of(base64.b64decode(edited.data[0].b64_json or ""))
        received = fakes[fake].requests[-1]
        if fake == "openai":
            assert received.path.endswith("/images/edits")
            uploads = [u for name in ("image[]", "image") for u in received.files.get(name, [])]
            assert len(uploads) == 1 and png_of(uploads[0].data).size == (256, 256)
        elif fake == "gemini":
            parts = received.json["contents"][0]["parts"]
            inline = [p for p in parts if "inline_data" in p or "inlineData" in p]
            assert len(inline) == 1
        else:
            assert str(received.json["image"]).startswith("data:image/png;base64,")


@pytest.mark.usefixtures("keys")
def test_the_new_models_reach_their_vendors_and_a_local_one_an_openai_compatible_server(
    server_factory: ServerFactory,
    fakes: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hosted models the SDK added, each through its vendor's fake; and an open-weight
    model pointed, as the catalog documents, at a server that speaks OpenAI's images API
    (SGLang Diffusion, vLLM-Omni: here a fake serving Qwen/Qwen-Image-2.1)."""
    local = FakeOpenAI.serving("Qwen/Qwen-Image-2.1", api_key="local-key")
    monkeypatch.setenv("TEST_LOCAL_KEY", "local-key")
    try:
        catalog = catalog_override(
            fakes, tmp_path / "catalog.toml", timeout=10, retries=0, env_prefix="TEST"
        )
        with catalog.open("a") as extra:  # as an operator's override would say it
            extra.write(
                '[models."qwen-image-2.1"]\nbackend = "openai"\nupstream = { base_url = '
                f'"{local.url}", model = "Qwen/Qwen-Image-2.1", api_key_env = "TEST_LOCAL_KEY", '
                "timeout_seconds = 10, exact_size = true }\n"
            )
        server = server_factory(preview_only=False, catalog=catalog, device="cpu")
        account = server.account(credits=100_000)
        client = MagicHour(token=account.key, base_url=server.url)
        for model, vendor, vendor_model in (
            ("gpt-image-2.5-flare", "openai", "gpt-image-2.5-flare"),
            ("nano-banana-2-lite", "gemini", "gemini-3.1-flash-lite-image"),
            ("nano-banana-2.1", "gemini", "gemini-3.2-flash-image-preview"),
            ("seedream-v5-pro", "seedream", "seedream-5-0-pro-260628"),
            ("qwen-image-2.1", "local", "Qwen/Qwen-Image-2.1"),
        ):
            created = client.v1.ai_image_generator.create(
                image_count=1,
                style={"prompt": "a red lighthouse"},
                model=model,  # type: ignore[arg-type]
                aspect_ratio="16:9",
                resolution="1k",
            )
            project = server.wait(account, created.id)
            assert project["status"] == "complete", (model, project["error"])
            fake = local if vendor == "local" else fakes[vendor]
            received = fake.requests[-1]
            if vendor == "gemini":
                assert f"/models/{vendor_model}:generateContent" in received.path
            else:
                assert received.json["model"] == vendor_model
            if fake in (local, fakes["openai"]):
                assert received.json["size"] == "1024x576"  # any WxH: the project's own
        # An edit through the editor: seedream-v4.5 edits only; the local model edits too.
        photo = tmp_path / "photo.png"
        Image.new("RGB", (400, 300), "orange").save(photo)
        for model, fake in (("seedream-v4.5", fakes["seedream"]), ("qwen-image-2.1", local)):
            edited = client.v1.ai_image_editor.create(
                assets={"image_file_paths": [client.v1.files.upload_file(str(photo))] * 2},
                style={"prompt": "at night"},
                model=model,  # type: ignore[arg-type]
                resolution="1k",
            )
            assert server.wait(account, edited.id)["status"] == "complete", model
            received = fake.requests[-1]
            if fake is local:
                assert received.path.endswith("/images/edits")
                assert received.fields["size"] == ["1024x768"]  # the photo's shape, at 1k
                assert len(received.files["image[]"]) == 2
            else:
                assert received.json["model"] == "seedream-4-5-251128"
                assert len(received.json["image"]) == 2
        # moderation goes to the upstreams that take it; input_fidelity to none of these.
        openai = OpenAI(api_key=account.key, base_url=f"{server.url}/v1", max_retries=0)
        openai.images.generate(prompt="x", model="gpt-image-2.5-flare", moderation="low")
        assert fakes["openai"].requests[-1].json["moderation"] == "low"
        openai.images.edit(
            image=("p.png", photo.read_bytes(), "image/png"),
            prompt="x",
            model="gpt-image-2",
            input_fidelity="high",
        )
        assert "input_fidelity" not in fakes["openai"].requests[-1].fields
    finally:
        local.stop()


@pytest.mark.usefixtures("keys")
def test_darkroom_sdk_and_cli_render_a_hosted_model(
    start: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = start()
    account = server.account(credits=10_000)
    with darkroom.Client(token=account.key, base_url=server.url) as sdk:
        result = sdk.v1.ai_image_generator.generate(
            image_count=1,
            style={"prompt": "a lighthouse"},
            model="seedream-v4",
            download_directory=tmp_path,
        )
    assert result.status == "complete"
    assert result.downloaded_paths and Path(result.downloaded_paths[0]).stat().st_size > 0
    out = tmp_path / "cli"
    made = darkroom_cli(
        server, account.key, "generate", "a lighthouse", "--model", "nano-banana", "-o", str(out)
    )
    assert made.returncode == 0, made.stderr
    files = list(out.iterdir())
    assert len(files) == 1 and png_of(files[0].read_bytes())


def test_a_model_whose_key_is_not_set_is_refused_before_any_charge(
    start: Callable[..., LiveServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_OPENAI_KEY", KEYS["OPENAI"])
    monkeypatch.delenv("TEST_GEMINI_KEY", raising=False)
    monkeypatch.delenv("TEST_ARK_KEY", raising=False)
    server = start()
    account = server.account(credits=1_000)
    models = {m["id"]: m for m in httpx.get(f"{server.url}/v1/models").json()["data"]}
    assert models["gpt-image-2"]["served"] is True
    assert models["gpt-image-2"]["backend"] == "openai"
    assert models["nano-banana"]["served"] is False
    assert "TEST_GEMINI_KEY is not set" in models["nano-banana"]["unavailable_reason"]
    body = {"image_count": 1, "model": "nano-banana", "style": {"prompt": "x"}}
    with server.client(account) as client:
        refused = client.post("/v1/ai-image-generator", json=body)
    assert refused.status_code == 400
    assert "'nano-banana' is not available on this server" in refused.json()["message"]
    assert server.balance(account) == 1_000


@pytest.mark.usefixtures("keys")
@pytest.mark.parametrize(
    ("cues", "code", "needle"),
    [
        (["500", "500", "500"], "upstream_error", "OpenAI answered 500"),
        (["not-an-image"], "upstream_error", "not an image"),
        (["401"], "upstream_auth", "OpenAI answered 401"),
        (["blocked"], "upstream", ""),
    ],
)
def test_an_upstream_failure_ends_in_error_with_a_refund(
    start: Callable[..., LiveServer],
    fakes: dict[str, Any],
    cues: list[str],
    code: str,
    needle: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = start(retries=2)
    account = server.account(credits=1_000)
    fakes["openai"].fail(*cues)
    project = ended(server, account, "gpt-image-2")
    assert project["status"] == "error"
    assert project["error"]["code"].startswith(code)
    assert needle in project["error"]["message"]
    assert project["credits_charged"] == 0
    assert server.balance(account) == 1_000
    everything = caplog.text + str(project)
    assert all(key not in everything for key in KEYS.values())


@pytest.mark.usefixtures("keys")
def test_a_429_is_retried_after_retry_after_and_charged_once(
    start: Callable[..., LiveServer], fakes: dict[str, Any]
) -> None:
    server = start()
    account = server.account(credits=1_000)
    fakes["gemini"].fail(("429", 1))
    started = time.monotonic()
    project = ended(server, account, "nano-banana")
    assert project["status"] == "complete"
    assert time.monotonic() - started >= 1  # it waited as told
    assert [r.answered for r in fakes["gemini"].requests] == [429, 200]
    assert server.balance(account) == 1_000 - project["credits_charged"]
    assert project["credits_charged"] > 0


@pytest.mark.usefixtures("keys")
def test_an_upstream_that_hangs_times_out_with_a_refund(
    start: Callable[..., LiveServer], fakes: dict[str, Any]
) -> None:
    server = start(timeout=2)
    account = server.account(credits=1_000)
    fakes["seedream"].fail("hang")
    project = ended(server, account, "seedream-v4")
    assert project["status"] == "error"
    assert project["error"]["code"] == "upstream_timeout"
    assert "2 seconds" in project["error"]["message"]
    assert server.balance(account) == 1_000


@pytest.mark.usefixtures("keys")
def test_cancel_during_an_upstream_call_refunds_at_once(
    start: Callable[..., LiveServer], fakes: dict[str, Any]
) -> None:
    server = start(timeout=60)
    account = server.account(credits=1_000)
    fakes["openai"].fail("hang")
    project_id = create(server, account, "gpt-image-2")["id"]
    wait_until(lambda: fakes["openai"].requests, "the vendor call to be in flight", timeout=10)
    with server.client(account) as client:
        canceled = client.post(f"/v1/image-projects/{project_id}/cancel")
    assert canceled.status_code == 200
    assert server.balance(account) == 1_000
    assert server.wait(account, project_id)["status"] == "canceled"
    # The worker let go of the call: the next project renders without waiting for the hang
    # (which holds until the fake stops, at the end of the test).
    follow = server.wait(account, create(server, account, "gpt-image-2")["id"], timeout=10)
    assert follow["status"] == "complete"


@pytest.mark.usefixtures("keys")
def test_counts_the_vendor_cannot_do_in_one_call_are_several_calls_and_usage_is_recorded(
    start: Callable[..., LiveServer], fakes: dict[str, Any]
) -> None:
    server = start()
    account = server.account(credits=10_000)
    project = ended(server, account, "nano-banana", count=4)
    assert project["status"] == "complete"
    assert len(project["downloads"]) == 4
    assert len(fakes["gemini"].requests) == 4
    seeds = {r.json["generationConfig"].get("seed") for r in fakes["gemini"].requests}
    assert len(seeds) == 4  # each image its own seed
    with admin_client(server) as admin:
        report = admin.get(f"/accounts/{account.id}/usage").json()
    upstream = report["models"]["nano-banana"]["upstream"]
    assert upstream["images"] == 4
    assert upstream["output_tokens"] > 0 and upstream["input_tokens"] > 0


# -- the backends on their own ---------------------------------------------------------------------


def request(model: str, width: int = 1024, height: int = 576, count: int = 1) -> RenderRequest:
    return RenderRequest(
        project_id="img_test",
        model=model,
        prompt="a red lighthouse",
        user_prompt="a red lighthouse",
        style=StyleHint("general", (), "scatter"),
        width=width,
        height=height,
        count=count,
        seed=7,
    )


class SeedreamByURL(Seedream):
    """A ModelArk-compatible upstream that answers with URLs (ModelArk's default)."""

    def call(self, *args: Any) -> Any:
        call = super().call(*args)
        assert call.json is not None
        call.json["response_format"] = "url"
        return call


def test_images_given_as_urls_are_downloaded_and_fitted(fakes: dict[str, Any]) -> None:
    fake = fakes["seedream"]
    upstream = UpstreamEntry(
        base_url=fake.url, model="seedream-4-0-250828", api_key_env="K", timeout_seconds=10
    )
    backend = ProviderBackend(SeedreamByURL(), {"seedream-v4": upstream}, {"K": KEYS["ARK"]})
    images = backend.render(request("seedream-v4", count=2))
    assert [png_of(data).size for data in images] == [(1024, 576)] * 2
    assert len(fake.downloads) == 2  # fetched at once: the vendor's URLs expire
    backend_again = ProviderBackend(SeedreamByURL(), {"seedream-v4": upstream}, {"K": "wrong"})
    with pytest.raises(BackendError) as refused:
        backend_again.render(request("seedream-v4"))
    assert refused.value.code == "upstream_auth" and "wrong" not in refused.value.message


@pytest.mark.parametrize(
    ("size", "openai", "gemini", "seedream"),
    [
        ((1024, 1024), "1024x1024", "1:1", "1024x1024"),
        ((1344, 768), "1536x1024", "16:9", "1344x768"),
        ((576, 1024), "1024x1536", "9:16", "720x1280"),
        ((4096, 2304), "1536x1024", "16:9", "4096x2304"),
        ((640, 640), "1024x1024", "1:1", "960x960"),
    ],
)
def test_sizes_map_to_what_each_vendor_takes(
    size: tuple[int, int], openai: str, gemini: str, seedream: str
) -> None:
    upstream = UpstreamEntry(base_url="http://x", model="m", api_key_env="K")
    w, h = size
    assert OpenAIVendor().call(request("m", w, h), upstream, "k", 1, 0).json["size"] == openai  # type: ignore[index]
    config = Gemini().call(request("m", w, h), upstream, "k", 1, 0).json["generationConfig"]  # type: ignore[index]
    assert config["imageConfig"]["aspectRatio"] == gemini
    assert size_for(w, h) == seedream


def test_openai_shaped_upstreams_get_exact_sizes_and_the_options_they_take() -> None:
    exact = UpstreamEntry(
        base_url="https://api.example/v1",
        model="gpt-image-1.5",
        api_key_env="K",
        exact_size=True,
        options=("moderation", "input_fidelity"),
    )
    vendor = OpenAIVendor()
    asked = {"moderation": "low", "input_fidelity": "high", "unknown": "x"}
    plain = replace(request("m", 4096, 4096), options=asked)
    generation = vendor.call(plain, exact, "k", 1, 0)
    assert generation.json is not None
    assert generation.json["size"] == "2880x2880"  # GPT Image 2's largest square
    assert generation.json["moderation"] == "low"
    assert "input_fidelity" not in generation.json  # an edit's option
    assert "unknown" not in generation.json
    edit = vendor.call(replace(plain, sources=(b"png",)), exact, "k", 1, 0)
    assert edit.data is not None and edit.data["input_fidelity"] == "high"
    bare = UpstreamEntry(base_url="https://api.example/v1", model="gpt-image-2", api_key_env="K")
    assert vendor.call(plain, bare, "k", 1, 0).json == {  # nothing it does not take
        "model": "gpt-image-2",
        "prompt": "a red lighthouse",
        "n": 1,
        "size": "1024x1024",
    }
