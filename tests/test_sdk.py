"""darkroom's own SDK (``darkroom.Client`` / ``darkroom.AsyncClient``) against a live server:
generate, typed answers, one exception class per failure, the overall timeout, progress,
safe verified downloads, and completion noticed through the long poll."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

import darkroom
from darkroom.engine.registry import Backends
from darkroom.sdk import resources
from tests.backends import Failing, Slow
from tests.conftest import ON_S3, Account, LiveServer, ServerFactory

PROMPT = {"prompt": "a lighthouse at dusk"}


@pytest.fixture(autouse=True)
def no_sdk_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK reads these; a developer's own must not leak into the tests."""
    for name in ("DARKROOM_API_KEY", "DARKROOM_BASE_URL", "MAGIC_HOUR_POLL_INTERVAL"):
        monkeypatch.delenv(name, raising=False)


def client(server: LiveServer, account: Account | None, **kwargs: Any) -> darkroom.Client:
    return darkroom.Client(token=account.key if account else None, base_url=server.url, **kwargs)


def assert_image(path: str, size: tuple[int, int]) -> None:
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG"
        assert image.size == size


def test_generate_downloads_verified_images(
    server: LiveServer, account: Account, tmp_path: Path
) -> None:
    out = tmp_path / "new" / "dir"  # created by generate
    seen: list[darkroom.Progress] = []
    with client(server, account) as sdk:
        project = sdk.v1.ai_image_generator.generate(
            image_count=2,
            style={**PROMPT, "tool": "ai-anime-generator"},
            model="flux-schnell",
            aspect_ratio="16:9",
            resolution="640px",
            seed=7,
            name="lighthouse",
            download_directory=out,
            on_progress=seen.append,
        )
    assert isinstance(project, darkroom.ImageProjectWithDownloads)
    assert project.status == "complete"
    assert project.name == "lighthouse"
    assert project.seed == 7
    assert project.credits_charged == 10
    assert project.downloaded_paths == [str(out / f"{project.id}-{n}.png") for n in (1, 2)]
    for path, item in zip(project.downloaded_paths, project.downloads, strict=True):
        assert_image(path, (640, 368))  # multiples of 16
        data = Path(path).read_bytes()
        assert item.sha256 == hashlib.sha256(data).hexdigest()
        assert item.bytes == len(data)
    assert [p.stage for p in seen][-3:] == ["downloading", "downloading", "complete"]
    assert seen[-1].downloaded == 2
    assert seen[-1].total == 2
    assert server.balance(account) == 10_000 - 10
    assert list(out.glob(".darkroom-*")) == []  # no temporary files left behind


def test_async_client_generates_concurrently(
    server: LiveServer, account: Account, tmp_path: Path
) -> None:
    progress: list[str] = []

    async def record(update: darkroom.Progress) -> None:  # a coroutine callback is awaited
        await asyncio.sleep(0)
        progress.append(update.stage)

    async def main() -> list[darkroom.ImageProjectWithDownloads]:
        async with darkroom.AsyncClient(token=account.key, base_url=server.url) as sdk:
            return await asyncio.gather(
                *(
                    sdk.v1.ai_image_generator.generate(
                        image_count=1,
                        style=PROMPT,
                        model="z-image-turbo",
                        resolution="640px",
                        download_directory=tmp_path,
                        on_progress=record,
                    )
                    for _ in range(3)
                )
            )

    projects = asyncio.run(main())
    assert {p.status for p in projects} == {"complete"}
    assert len({p.id for p in projects}) == 3
    for project in projects:
        assert project.downloaded_paths is not None
        assert_image(project.downloaded_paths[0], (640, 640))
    assert progress.count("complete") == 3


def test_sync_and_async_clients_are_twins() -> None:
    pairs = [
        (darkroom.Client, darkroom.AsyncClient),
        (resources.V1Client, resources.AsyncV1Client),
    ]
    # Every resource of client.v1, as the clients build them (webhooks included).
    v1 = resources.V1Client(None)  # type: ignore[arg-type]
    async_v1 = resources.AsyncV1Client(None)  # type: ignore[arg-type]
    assert vars(v1).keys() == vars(async_v1).keys()
    for name in vars(v1):
        pairs.append((type(getattr(v1, name)), type(getattr(async_v1, name))))
    assert {sync.__name__ for sync, _ in pairs} >= {"WebhooksClient", "AiImageGeneratorClient"}
    for sync, async_ in pairs:
        public = {name for name in vars(sync) if not name.startswith("_")}
        assert public == {name for name in vars(async_) if not name.startswith("_")}
        for name in public - {"close", "base_url"}:
            method, twin = getattr(sync, name), getattr(async_, name)
            assert inspect.iscoroutinefunction(twin), f"{async_.__name__}.{name}"
            assert not inspect.iscoroutinefunction(method)
            assert inspect.signature(method) == inspect.signature(twin), name
            # Typed alike: a create call's keywords are one TypedDict that both twins unpack.
            assert method.__annotations__ == twin.__annotations__, name
            assert method.__doc__ == twin.__doc__, name
    assert (
        inspect.signature(darkroom.Client).parameters.keys()
        == inspect.signature(darkroom.AsyncClient).parameters.keys()
    )
    v1_class, async_v1_class = resources.V1Client, resources.AsyncV1Client
    assert (
        inspect.signature(v1_class).parameters.keys()
        == inspect.signature(async_v1_class).parameters.keys()
    )


def test_create_calls_take_their_typed_keywords() -> None:
    """A create call's keywords are a TypedDict (shown as a signature), checked as a signature
    would check them: a misspelt or missing keyword is a TypeError before any request."""
    client = darkroom.Client(token="dk_unused", base_url="http://127.0.0.1:9")
    creates = {
        client.v1.ai_image_generator.create: resources.CreateParams,
        client.v1.ai_image_generator.generate: resources.GenerateParams,
        client.v1.webhooks.create: resources.WebhookCreateParams,
    }
    for create, params in creates.items():
        shown = inspect.signature(create).parameters
        assert list(shown) == list(params.__annotations__)
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in shown.values())
    assert (
        inspect.signature(client.v1.ai_image_generator.generate)
        .parameters["download_outputs"]
        .default
        is True
    )
    with pytest.raises(TypeError, match="unexpected keyword argument 'stlye'"):
        client.v1.ai_image_generator.create(image_count=1, stlye={"prompt": "x"})  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="missing required keyword argument 'style'"):
        client.v1.ai_image_generator.generate(image_count=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="missing required keyword argument 'url'"):
        client.v1.webhooks.create(events=["image.completed"])  # type: ignore[call-arg]
    client.close()


def test_published_sdk_code_runs_with_one_import_changed(
    server: LiveServer, account: Account, tmp_path: Path
) -> None:
    """The published SDK's README example, with ``from darkroom import Client``."""
    from darkroom import Client

    sdk = Client(token=account.key, base_url=server.url)
    created = sdk.v1.ai_image_generator.create(
        image_count=1,
        style={"prompt": "Cool image", "tool": "ai-anime-generator"},
        aspect_ratio="1:1",
        model="z-image-turbo",
        name="My Ai Image image",
        resolution="640px",
    )
    assert created.credits_charged == created.frame_cost == 5
    result = sdk.v1.image_projects.check_result(created.id, True, True, str(tmp_path))
    assert result.status == "complete"
    assert result.downloaded_paths == [str(tmp_path / f"{created.id}-1.png")]
    url = sdk.v1.image_projects.get(id=created.id).downloads[0].url
    assert url.startswith(server.url) or ON_S3  # on S3: a presigned URL of the bucket
    sdk.v1.image_projects.delete(id=created.id)
    with pytest.raises(darkroom.NotFoundError):
        sdk.v1.image_projects.get(id=created.id)
    assert sdk.v1.account.list().credits == 10_000 - 5


def test_environment_supplies_key_and_url(
    server: LiveServer, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DARKROOM_API_KEY", account.key)
    monkeypatch.setenv("DARKROOM_BASE_URL", server.url)
    with darkroom.Client() as sdk:
        balance = sdk.v1.account.list()
    assert balance.id == account.id
    assert balance.tier == "business"


def test_existing_files_are_never_overwritten(
    server: LiveServer, account: Account, tmp_path: Path
) -> None:
    with client(server, account) as sdk:
        first = sdk.v1.ai_image_generator.generate(
            image_count=1, style=PROMPT, resolution="640px", download_directory=tmp_path
        )
        assert first.downloaded_paths is not None
        taken = Path(first.downloaded_paths[0])
        taken.write_bytes(b"my own file")
        again = sdk.v1.image_projects.check_result(first.id, True, True, tmp_path)
    assert again.downloaded_paths == [str(tmp_path / f"{first.id}-1 (1).png")]
    assert taken.read_bytes() == b"my own file"
    assert_image(again.downloaded_paths[0], (640, 640))


def test_a_download_that_does_not_match_its_digest_is_refused(
    server: LiveServer, account: Account, tmp_path: Path
) -> None:
    with client(server, account, max_retries=1) as sdk:
        project = sdk.v1.ai_image_generator.generate(
            image_count=1, style=PROMPT, resolution="640px", download_outputs=False
        )
        stored = server.stored_image(project.id, 1)
        server.overwrite_image(project.id, 1, stored[:-1] + b"\0")  # corrupted in storage
        with pytest.raises(darkroom.DownloadError, match="SHA-256"):
            sdk.v1.image_projects.check_result(project.id, True, True, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []  # nothing unverified kept


@pytest.mark.parametrize(
    ("tier", "credits", "body", "error", "status"),
    [
        ("free", 10_000, {"model": "nano-banana-pro"}, darkroom.ForbiddenTierError, 403),
        ("business", 4, {}, darkroom.InsufficientCreditsError, 402),
        ("business", 100, {"model": "no-such-model"}, darkroom.BadRequestError, 400),
        (
            "business",
            100,
            {"image_count": 3, "model": "nano-banana-pro"},
            darkroom.BadRequestError,
            400,
        ),
    ],
)
def test_each_failure_has_its_exception(
    server: LiveServer,
    tier: str,
    credits: int,
    body: dict[str, Any],
    error: type[darkroom.APIStatusError],
    status: int,
) -> None:
    account = server.account(tier=tier, credits=credits)
    args: dict[str, Any] = {"image_count": 1, "style": PROMPT, "resolution": "1k", **body}
    with client(server, account) as sdk, pytest.raises(error) as raised:
        sdk.v1.ai_image_generator.create(**args)
    assert raised.value.status_code == status
    assert raised.value.message
    assert server.balance(account) == credits  # nothing charged


def test_authentication_errors(server: LiveServer) -> None:
    with client(server, None) as sdk, pytest.raises(darkroom.AuthenticationError) as raised:
        sdk.v1.account.list()
    assert raised.value.status_code == 401
    assert "DARKROOM_API_KEY" in raised.value.message  # says how to give one
    wrong = darkroom.Client(token="dk_wrong", base_url=server.url)
    with wrong as sdk, pytest.raises(darkroom.AuthenticationError):
        sdk.v1.image_projects.get(id="img_whatever")


def test_connection_errors_after_retries(tmp_path: Path) -> None:
    with socket_free_port() as port:
        url = f"http://127.0.0.1:{port}"
    sdk = darkroom.Client(token="dk_x", base_url=url, max_retries=2)
    started = time.monotonic()
    with pytest.raises(darkroom.APIConnectionError, match="could not reach"):
        sdk.v1.account.list()
    assert time.monotonic() - started >= 0.5  # backed off twice: at least 0.25 s + 0.5 s


def test_request_timeout_is_its_own_error(server_factory: ServerFactory) -> None:
    slow = Slow()
    server = server_factory(Backends([slow]))
    account = server.account()
    try:
        with client(server, account, timeout=0.3, max_retries=0) as sdk:
            created = sdk.v1.ai_image_generator.create(image_count=1, style=PROMPT)
            assert slow.entered.wait(5)
            # A long poll beyond the client's own request timeout gets its own, longer timeout.
            project = sdk.v1.image_projects.get(id=created.id, wait=0.6)
            assert project.status == "rendering"
            with pytest.raises(darkroom.APITimeoutError):
                sdk.v1.image_projects.get(id=created.id, wait=2, request_options={"timeout": 0.2})
    finally:
        slow.release.set()


def test_generate_gives_up_after_its_timeout(server_factory: ServerFactory) -> None:
    slow = Slow()
    server = server_factory(Backends([slow]))
    account = server.account()
    try:
        with client(server, account) as sdk:
            started = time.monotonic()
            with pytest.raises(darkroom.GenerateTimeoutError) as raised:
                sdk.v1.ai_image_generator.generate(image_count=1, style=PROMPT, timeout=0.8)
            waited = time.monotonic() - started
    finally:
        slow.release.set()
    assert 0.8 <= waited < 2.5
    assert raised.value.project.status == "rendering"
    assert isinstance(raised.value, TimeoutError)
    assert raised.value.project.id in str(raised.value)


def test_a_failed_job_is_returned_then_raises_on_request(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory(Backends([Failing()]))
    account = server.account()
    with client(server, account) as sdk:
        project = sdk.v1.ai_image_generator.generate(
            image_count=2, style=PROMPT, resolution="640px", download_directory=tmp_path
        )
    assert project.status == "error"
    assert project.error is not None
    assert project.error.code == "gpu_on_fire"
    assert project.credits_charged == 0  # refunded
    assert project.downloaded_paths is None
    with pytest.raises(darkroom.JobFailedError, match="GPU is on fire") as raised:
        project.raise_for_status()
    assert raised.value.code == "gpu_on_fire"
    assert server.balance(account) == 10_000


def test_generate_returns_on_completion(server_factory: ServerFactory) -> None:
    """The published SDK sleeps up to a whole polling interval (0.5 s) after the render ends;
    the long poll tells darkroom's SDK at once (woken by the completion: the server would look
    at the database only every 30 s here). How fast: benchmarks/wait_overhead.py."""
    slow = Slow()
    server = server_factory(Backends([slow]), poll_seconds=30)
    account = server.account()
    stages: list[tuple[str, float]] = []
    outcome: dict[str, Any] = {}

    def run() -> None:
        with client(server, account) as sdk:
            outcome["project"] = sdk.v1.ai_image_generator.generate(
                image_count=1,
                style=PROMPT,
                resolution="640px",
                download_outputs=False,
                on_progress=lambda p: stages.append((p.stage, time.monotonic())),
            )
        outcome["at"] = time.monotonic()

    worker = threading.Thread(target=run)
    worker.start()
    assert slow.entered.wait(5)
    time.sleep(0.7)  # longer than one polling interval of the published SDK
    slow.release.set()
    worker.join(10)
    assert outcome["project"].status == "complete"
    assert slow.finished_at is not None
    assert outcome["at"] - slow.finished_at < 0.3
    # (queued only if the first look came before a worker claimed it)
    assert [stage for stage, _ in stages if stage != "queued"] == ["rendering", "complete"]


def test_models_and_account(server: LiveServer) -> None:
    account = server.account(tier="free", credits=42)
    with client(server, account) as sdk:
        models = sdk.v1.models.list()
        one = sdk.v1.models.get(id="flux-schnell")
        balance = sdk.v1.account.list()
    names = {m.id for m in models.data}
    assert "flux-schnell" in names
    assert "nano-banana-pro" not in names  # not on the free tier
    assert one.credits_per_image["640px"] == 5
    assert balance.credits == 42
    assert balance.tier == "free"


def test_http_client_can_be_supplied(server: LiveServer, account: Account) -> None:
    seen: list[str] = []

    def log(request: httpx.Request) -> None:
        seen.append(request.url.path)

    http = httpx.Client(event_hooks={"request": [log]})
    with darkroom.Client(token=account.key, base_url=server.url, httpx_client=http) as sdk:
        sdk.v1.account.list()
    assert seen == ["/v1/account"]
    assert not http.is_closed  # the caller's client stays the caller's to close
    http.close()


class socket_free_port:
    """A loopback port with nothing listening on it."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
