"""The published ``magic_hour`` SDK (PyPI 0.90.0), unmodified, against a live darkroom server:
generate (sync and async) down to the PNG files on disk, the deprecated request fields, every
error status as ``magic_hour.ApiError``, delete, and a failed job with its refund."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from magic_hour import ApiError, AsyncClient, Client
from PIL import Image

from darkroom.engine.registry import Backends
from tests.backends import Failing
from tests.conftest import Account, LiveServer, ServerFactory
from tests.test_catalog import published

PROMPT = "a lighthouse at dusk"


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK sleeps MAGIC_HOUR_POLL_INTERVAL seconds (default 0.5) between polls."""
    monkeypatch.setenv("MAGIC_HOUR_POLL_INTERVAL", "0.02")


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """Where the SDK downloads to; it must exist beforehand."""
    path = tmp_path / "downloads"
    path.mkdir()
    return path


SdkFactory = Callable[[LiveServer, Account | str | None], Client]


@pytest.fixture
def sdk() -> Iterator[SdkFactory]:
    """``Client(token=..., base_url=server.url)`` as a user writes it (for an Account, its key);
    the SDK never closes its httpx client, so the fixture does at the end."""
    clients: list[Client] = []

    def make(server: LiveServer, who: Account | str | None) -> Client:
        token = who.key if isinstance(who, Account) else who
        client = Client(token=token, base_url=server.url)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client._base_client.httpx_client.close()


@contextlib.asynccontextmanager
async def async_sdk(server: LiveServer, account: Account) -> AsyncIterator[AsyncClient]:
    client = AsyncClient(token=account.key, base_url=server.url)
    try:
        yield client
    finally:
        await client._base_client.httpx_client.aclose()


def raw_project(server: LiveServer, account: Account, project_id: str) -> dict[str, Any]:
    """The project as the server sends it, with darkroom's extra keys the SDK model drops."""
    return server.wait(account, project_id)


def generate_ok(client: Client, out_dir: Path, **kwargs: Any) -> Any:
    """``generate`` into ``out_dir`` that must complete and download its images."""
    result = client.v1.ai_image_generator.generate(download_directory=str(out_dir), **kwargs)
    assert result.status == "complete", result.error
    assert result.downloaded_paths is not None
    return result


def assert_png(path: str | Path, size: tuple[int, int]) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:  # verify() leaves the image unusable: open it again
        image.load()
        assert image.size == size


def api_error(excinfo: pytest.ExceptionInfo[ApiError], status: int) -> str:
    """Check an ApiError's status and JSON body; its message."""
    error = excinfo.value
    assert error.status_code == status, str(error)
    assert error.response.headers["content-type"] == "application/json"
    assert isinstance(error.body, dict)
    message = error.body["message"]
    assert isinstance(message, str)
    assert message
    return message


# -- generate -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("aspect_ratio", "size"),
    [("1:1", (1024, 1024)), ("16:9", (1024, 576)), ("9:16", (576, 1024))],
)
def test_generate_sync_downloads_pngs_of_the_right_size(
    server: LiveServer, out_dir: Path, aspect_ratio: Any, size: tuple[int, int], sdk: SdkFactory
) -> None:
    account = server.account(tier="pro", credits=1_000)
    client = sdk(server, account)
    result = generate_ok(
        client,
        out_dir,
        image_count=1,
        style={"prompt": PROMPT},
        aspect_ratio=aspect_ratio,
        resolution="1k",
    )
    assert result.error is None
    assert result.type_ == "AI_IMAGE"
    assert result.image_count == 1
    assert len(result.downloads) == 1
    assert [Path(p).name for p in result.downloaded_paths] == [f"{result.id}-1.png"]
    for path in result.downloaded_paths:
        assert Path(path).is_file()
        assert Path(path).parent == out_dir
        assert_png(path, size)
    charged = client.v1.image_projects.get(id=result.id).credits_charged
    assert charged == result.credits_charged == result.total_frame_cost == 5
    assert server.balance(account) == 1_000 - charged
    project = raw_project(server, account, result.id)
    assert (project["width"], project["height"]) == size
    assert project["aspect_ratio"] == aspect_ratio


def test_generate_async_two_images(server: LiveServer, out_dir: Path) -> None:
    account = server.account(tier="pro", credits=1_000)

    async def main() -> Any:
        async with async_sdk(server, account) as client:
            result = await client.v1.ai_image_generator.generate(
                image_count=2,
                style={"prompt": PROMPT, "tool": "ai-anime-generator"},
                aspect_ratio="16:9",
                model="flux-schnell",
                resolution="1k",
                download_directory=str(out_dir),
            )
            fetched = await client.v1.image_projects.get(id=result.id)
            return result, fetched

    result, fetched = asyncio.run(main())
    assert result.status == "complete"
    assert result.image_count == 2
    assert len(result.downloads) == 2
    assert result.downloaded_paths is not None
    names = [Path(p).name for p in result.downloaded_paths]
    assert names == [f"{result.id}-1.png", f"{result.id}-2.png"]
    assert sorted(p.name for p in out_dir.iterdir()) == names
    for path in result.downloaded_paths:
        assert_png(path, (1024, 576))
    assert fetched.credits_charged == result.credits_charged == 2 * 5
    assert server.balance(account) == 1_000 - fetched.credits_charged


def test_generate_without_waiting_or_downloading(
    server: LiveServer, out_dir: Path, sdk: SdkFactory
) -> None:
    account = server.account(tier="pro", credits=1_000)
    client = sdk(server, account)
    early = client.v1.ai_image_generator.generate(
        image_count=1,
        style={"prompt": PROMPT},
        resolution="640px",
        wait_for_completion=False,
        download_directory=str(out_dir),
    )
    assert early.status in ("queued", "rendering", "complete")
    assert early.downloaded_paths is None
    done = client.v1.ai_image_generator.generate(
        image_count=1,
        style={"prompt": PROMPT},
        resolution="640px",
        download_outputs=False,
        download_directory=str(out_dir),
    )
    assert done.status == "complete"
    assert done.downloaded_paths is None
    assert len(done.downloads) == 1
    assert list(out_dir.iterdir()) == []
    # the URL the SDK would have fetched works without the API key
    image = httpx.get(done.downloads[0].url)
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    raw_project(server, account, early.id)  # and the first one finishes too


# -- deprecated and defaulted fields --------------------------------------------------------------


def test_orientation_alone_sets_the_aspect_ratio(server: LiveServer, sdk: SdkFactory) -> None:
    account = server.account(tier="pro", credits=1_000)
    client = sdk(server, account)
    created = client.v1.ai_image_generator.create(
        image_count=1, style={"prompt": PROMPT}, orientation="landscape", resolution="1k"
    )
    project = raw_project(server, account, created.id)
    assert project["width"] > project["height"]
    assert (project["width"], project["height"]) == (1024, 576)
    assert project["aspect_ratio"] == "16:9"


def test_aspect_ratio_wins_over_orientation(
    server: LiveServer, out_dir: Path, sdk: SdkFactory
) -> None:
    account = server.account(tier="pro", credits=1_000)
    client = sdk(server, account)
    result = generate_ok(
        client,
        out_dir,
        image_count=1,
        style={"prompt": PROMPT},
        orientation="portrait",
        aspect_ratio="1:1",
        resolution="1k",
    )
    assert_png(result.downloaded_paths[0], (1024, 1024))
    assert raw_project(server, account, result.id)["aspect_ratio"] == "1:1"


@pytest.mark.parametrize(
    ("kwargs", "model", "credits"),
    [
        ({"style": {"prompt": PROMPT, "quality_mode": "pro"}}, "seedream-v4", 40),
        ({"style": {"prompt": PROMPT, "quality_mode": "standard"}}, "z-image-turbo", 5),
        (
            {"style": {"prompt": PROMPT, "quality_mode": "pro"}, "model": "flux-schnell"},
            "flux-schnell",
            5,
        ),
        ({"style": {"prompt": PROMPT}, "model": "seedream"}, "seedream-v4", 40),
        ({"style": {"prompt": PROMPT}, "model": "default"}, "z-image-turbo", 5),
        ({"style": {"prompt": PROMPT}}, "z-image-turbo", 5),
    ],
    ids=["quality-pro", "quality-standard", "model-wins", "seedream-alias", "default", "none"],
)
def test_model_selection_and_price(
    server: LiveServer, kwargs: dict[str, Any], model: str, credits: int, sdk: SdkFactory
) -> None:
    account = server.account(tier="pro", credits=1_000)
    client = sdk(server, account)
    created = client.v1.ai_image_generator.create(image_count=1, resolution="1k", **kwargs)
    assert created.credits_charged == created.frame_cost == credits
    project = raw_project(server, account, created.id)
    assert project["status"] == "complete"
    assert project["model"] == model
    assert project["credits_charged"] == credits
    assert server.balance(account) == 1_000 - credits


def test_every_published_model_charges_its_published_price(
    server: LiveServer, sdk: SdkFactory
) -> None:
    """Each model the installed SDK's docstring lists, created through the SDK at its lowest
    resolution, costs its "from N credits/image" and completes; a tier it does not list is
    refused with a 403, nothing charged."""
    models = published("v1_ai_image_generator_create_body")
    business, free = server.account(credits=100_000), server.account(tier="free", credits=1_000)
    client, poor = sdk(server, business), sdk(server, free)
    created, charged = {}, 0
    for model, described in models.items():
        lowest = described["resolutions"].split(", ")[0]
        count = int(described["last"].split(", ")[0])
        answer = client.v1.ai_image_generator.create(
            image_count=count,
            style={"prompt": PROMPT},
            model=model,  # type: ignore[arg-type]
            resolution=lowest,  # type: ignore[arg-type]
        )
        assert answer.credits_charged == count * int(described["from"]), model
        created[model], charged = answer.id, charged + answer.credits_charged
        if "free" not in described["tiers"]:
            with pytest.raises(ApiError) as excinfo:
                poor.v1.ai_image_generator.create(
                    image_count=count,
                    style={"prompt": PROMPT},
                    model=model,  # type: ignore[arg-type]
                )
            assert "free tier" in api_error(excinfo, 403)
    assert server.balance(business) == 100_000 - charged
    assert server.balance(free) == 1_000
    for model, project_id in created.items():
        project = raw_project(server, business, project_id)
        assert (project["status"], project["model"]) == ("complete", model)


def test_auto_resolution_on_a_free_account_is_1k(
    server: LiveServer, out_dir: Path, sdk: SdkFactory
) -> None:
    account = server.account(tier="free", credits=100)
    client = sdk(server, account)
    result = generate_ok(
        client,
        out_dir,
        image_count=1,
        style={"prompt": PROMPT},
        model="flux-schnell",
        resolution="auto",
    )
    assert result.credits_charged == 5
    assert_png(result.downloaded_paths[0], (1024, 1024))
    assert raw_project(server, account, result.id)["resolution"] == "1k"
    assert server.balance(account) == 100 - 5


def test_auto_resolution_on_a_business_account_is_2k(server: LiveServer, sdk: SdkFactory) -> None:
    account = server.account(tier="business", credits=100)
    client = sdk(server, account)
    created = client.v1.ai_image_generator.create(
        image_count=1, style={"prompt": PROMPT}, model="flux-schnell", resolution="auto"
    )
    assert created.credits_charged == 10
    project = raw_project(server, account, created.id)
    assert project["resolution"] == "2k"
    assert (project["width"], project["height"]) == (2048, 2048)
    assert server.balance(account) == 100 - 10


def test_default_and_custom_names(server: LiveServer, sdk: SdkFactory) -> None:
    account = server.account(tier="pro", credits=1_000)
    client = sdk(server, account)
    unnamed = client.v1.ai_image_generator.create(
        image_count=1, style={"prompt": PROMPT}, resolution="640px"
    )
    named = client.v1.ai_image_generator.create(
        image_count=1, style={"prompt": PROMPT}, resolution="640px", name="My lighthouse"
    )
    unnamed_name = client.v1.image_projects.get(id=unnamed.id).name
    assert unnamed_name is not None
    assert unnamed_name.startswith("Ai Image - ")
    assert client.v1.image_projects.get(id=named.id).name == "My lighthouse"
    raw_project(server, account, unnamed.id)
    raw_project(server, account, named.id)


def test_explicit_none_arrives_as_null_and_is_accepted(
    server: LiveServer, out_dir: Path, sdk: SdkFactory
) -> None:
    account = server.account(tier="pro", credits=1_000)
    client = sdk(server, account)
    result = generate_ok(
        client,
        out_dir,
        image_count=1,
        style={"prompt": PROMPT, "tool": None, "quality_mode": None},
        aspect_ratio=None,
        model=None,
        name=None,
        orientation=None,
        resolution=None,
    )
    assert result.name is not None
    assert result.name.startswith("Ai Image - ")
    # defaults: z-image-turbo, 1:1, `auto` → 2k on pro
    assert_png(result.downloaded_paths[0], (2048, 2048))
    assert result.credits_charged == 10


def test_old_sdk_style_call(server: LiveServer, out_dir: Path, sdk: SdkFactory) -> None:
    """Older SDK releases send only image_count, orientation and style."""
    account = server.account(tier="pro", credits=1_000)
    client = sdk(server, account)
    result = generate_ok(
        client,
        out_dir,
        image_count=1,
        orientation="landscape",
        style={"prompt": PROMPT, "tool": "ai-anime-generator"},
    )
    assert [Path(p).name for p in result.downloaded_paths] == [f"{result.id}-1.png"]
    # default model z-image-turbo at `auto` (2k on pro) in landscape
    assert_png(result.downloaded_paths[0], (2048, 1152))
    assert result.credits_charged == 10
    project = raw_project(server, account, result.id)
    assert project["model"] == "z-image-turbo"
    assert project["tool"] == "ai-anime-generator"
    assert server.balance(account) == 1_000 - 10


# -- errors ---------------------------------------------------------------------------------------


def test_wrong_or_missing_token_is_401(server: LiveServer, sdk: SdkFactory) -> None:
    account = server.account()
    for token in ("dk_wrong", None):
        client = sdk(server, token)
        with pytest.raises(ApiError) as excinfo:
            client.v1.ai_image_generator.create(image_count=1, style={"prompt": PROMPT})
        assert api_error(excinfo, 401) == "Unauthorized"
        with pytest.raises(ApiError) as excinfo:
            client.v1.image_projects.get(id="img_nope")
        assert api_error(excinfo, 401) == "Unauthorized"
    assert server.balance(account) == 10_000


def test_not_enough_credits_is_402_and_charges_nothing(server: LiveServer, sdk: SdkFactory) -> None:
    account = server.account(tier="free", credits=4)
    client = sdk(server, account)
    with pytest.raises(ApiError) as excinfo:
        client.v1.ai_image_generator.generate(
            image_count=1, style={"prompt": PROMPT}, model="flux-schnell", resolution="1k"
        )
    message = api_error(excinfo, 402)
    assert "5 credits" in message
    assert "Nothing was charged" in message
    assert server.balance(account) == 4


def test_tier_gating_is_403(server: LiveServer, sdk: SdkFactory) -> None:
    account = server.account(tier="free", credits=1_000)
    client = sdk(server, account)
    with pytest.raises(ApiError) as excinfo:
        client.v1.ai_image_generator.create(
            image_count=1, style={"prompt": PROMPT}, model="gpt-image-2"
        )
    assert "gpt-image-2" in api_error(excinfo, 403)
    with pytest.raises(ApiError) as excinfo:
        client.v1.ai_image_generator.create(
            image_count=1, style={"prompt": PROMPT}, resolution="2k"
        )
    assert "2k" in api_error(excinfo, 403)
    assert server.balance(account) == 1_000


def test_unknown_and_foreign_projects_are_404(server: LiveServer, sdk: SdkFactory) -> None:
    owner = server.account(name="owner")
    intruder = server.account(name="intruder")
    client = sdk(server, owner)
    with pytest.raises(ApiError) as excinfo:
        client.v1.image_projects.get(id="img_nope")
    assert api_error(excinfo, 404) == "Not Found"
    with pytest.raises(ApiError) as excinfo:
        client.v1.image_projects.delete(id="img_nope")
    assert api_error(excinfo, 404) == "Not Found"

    created = client.v1.ai_image_generator.create(
        image_count=1, style={"prompt": PROMPT}, resolution="640px"
    )
    raw_project(server, owner, created.id)
    other = sdk(server, intruder)
    with pytest.raises(ApiError) as excinfo:
        other.v1.image_projects.delete(id=created.id)
    assert api_error(excinfo, 404) == "Not Found"
    with pytest.raises(ApiError) as excinfo:
        other.v1.image_projects.get(id=created.id)
    assert api_error(excinfo, 404) == "Not Found"
    # still there, untouched, for its owner
    assert client.v1.image_projects.get(id=created.id).status == "complete"
    assert len(server.stored(created.id)) == 1


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"image_count": 5, "model": "flux-schnell"}, "image_count"),
        ({"image_count": 1, "style": {"prompt": ""}}, "prompt"),
        ({"image_count": 1, "style": {"prompt": "   "}}, "prompt"),
    ],
    # (every model the SDK names is served: test_every_published_model_charges_its_published_price)
    ids=["image-count", "empty-prompt", "blank-prompt"],
)
def test_invalid_requests_are_400(
    server: LiveServer, kwargs: dict[str, Any], needle: str, sdk: SdkFactory
) -> None:
    account = server.account(tier="business", credits=1_000)
    client = sdk(server, account)
    call = {"style": {"prompt": PROMPT}} | kwargs
    with pytest.raises(ApiError) as excinfo:
        client.v1.ai_image_generator.generate(**call)
    assert needle in api_error(excinfo, 400)
    assert server.balance(account) == 1_000


def test_async_client_raises_api_error_too(server: LiveServer) -> None:
    account = server.account(tier="free", credits=1_000)

    async def main() -> list[ApiError]:
        async with async_sdk(server, account) as client:
            calls: list[Callable[[], Awaitable[object]]] = [
                lambda: client.v1.ai_image_generator.create(
                    image_count=1, style={"prompt": PROMPT}, model="gpt-image-2"
                ),
                lambda: client.v1.image_projects.get(id="img_nope"),
                lambda: client.v1.image_projects.delete(id="img_nope"),
            ]
            errors: list[ApiError] = []
            for call in calls:
                with pytest.raises(ApiError) as excinfo:
                    await call()
                errors.append(excinfo.value)
            return errors

    errors = asyncio.run(main())
    assert [e.status_code for e in errors] == [403, 404, 404]
    assert all(isinstance(e.body, dict) and e.body["message"] for e in errors)
    assert server.balance(account) == 1_000


# -- delete ---------------------------------------------------------------------------------------


def test_delete_after_generate(server: LiveServer, out_dir: Path, sdk: SdkFactory) -> None:
    account = server.account(tier="pro", credits=1_000)
    client = sdk(server, account)
    result = generate_ok(
        client,
        out_dir,
        image_count=3,
        style={"prompt": PROMPT},
        model="flux-schnell",
        resolution="640px",
    )
    assert len(server.stored(result.id)) == 3
    balance = server.balance(account)

    assert client.v1.image_projects.delete(id=result.id) is None

    assert server.stored(result.id) == []
    with pytest.raises(ApiError) as excinfo:
        client.v1.image_projects.get(id=result.id)
    assert api_error(excinfo, 404) == "Not Found"
    with pytest.raises(ApiError) as excinfo:
        client.v1.image_projects.delete(id=result.id)
    assert api_error(excinfo, 404) == "Not Found"
    assert httpx.get(result.downloads[0].url).status_code == 404
    # a completed project is not refunded by its deletion; the local copies stay the caller's
    assert server.balance(account) == balance == 1_000 - 15
    assert len(list(out_dir.iterdir())) == 3


def test_async_delete(server: LiveServer) -> None:
    account = server.account(tier="pro", credits=1_000)

    async def main() -> str:
        async with async_sdk(server, account) as client:
            result = await client.v1.ai_image_generator.generate(
                image_count=1,
                style={"prompt": PROMPT},
                resolution="640px",
                download_outputs=False,
            )
            assert result.status == "complete"
            assert await client.v1.image_projects.delete(id=result.id) is None
            with pytest.raises(ApiError) as excinfo:
                await client.v1.image_projects.get(id=result.id)
            assert excinfo.value.status_code == 404
            return str(result.id)

    project_id = asyncio.run(main())
    assert server.stored(project_id) == []


# -- a failing backend ----------------------------------------------------------------------------


def test_failed_job_returns_error_and_refunds(
    server_factory: ServerFactory, out_dir: Path, sdk: SdkFactory
) -> None:
    server = server_factory(backends=Backends([Failing()]))
    account = server.account(tier="pro", credits=1_000)
    client = sdk(server, account)
    result = client.v1.ai_image_generator.generate(
        image_count=2,
        style={"prompt": PROMPT},
        model="seedream-v4",
        resolution="1k",
        download_directory=str(out_dir),
    )
    assert result.status == "error"
    assert result.error is not None
    assert result.error.code == "gpu_on_fire"
    assert result.error.message == "the GPU is on fire"
    assert result.credits_charged == 0
    assert result.total_frame_cost == 0
    assert result.downloads == []
    assert result.downloaded_paths is None
    assert list(out_dir.iterdir()) == []
    assert client.v1.image_projects.get(id=result.id).credits_charged == 0
    assert server.balance(account) == 1_000
    assert server.stored(result.id) == []


def test_failed_job_async(server_factory: ServerFactory, out_dir: Path) -> None:
    server = server_factory(backends=Backends([Failing()]))
    account = server.account(tier="free", credits=5)

    async def main() -> Any:
        async with async_sdk(server, account) as client:
            return await client.v1.ai_image_generator.generate(
                image_count=1, style={"prompt": PROMPT}, download_directory=str(out_dir)
            )

    result = asyncio.run(main())
    assert result.status == "error"
    assert result.error is not None
    assert result.error.code == "gpu_on_fire"
    assert result.credits_charged == 0
    assert server.balance(account) == 5
