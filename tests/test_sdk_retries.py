"""Retries against a server that fails the first attempts (a proxy on loopback in front of a live
darkroom): backoff with jitter, ``Retry-After`` honoured, and one Idempotency-Key per logical
create, so that however many attempts reach the server there is one project and one charge."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

import darkroom
from darkroom.store import ledger
from darkroom.store.tables import projects
from tests.conftest import Account, LiveServer, ServerFactory
from tests.faults import DROP_AFTER, DROP_BEFORE, STRIP_QUERY, FaultProxy, Rule, creates

PROMPT = {"prompt": "a lighthouse at dusk"}


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    proxy = FaultProxy()
    yield proxy
    proxy.close()


@pytest.fixture
def server(server_factory: ServerFactory, proxy: FaultProxy) -> LiveServer:
    """darkroom behind the proxy: its download links (darkroom's own, also on S3 runs) point at
    the proxy too."""
    server = server_factory(public_url=proxy.url, storage_links="proxy")
    proxy.upstream = server.url
    return server


def charges(server: LiveServer, account: Account) -> list[str | None]:
    with server.services.db.read() as conn:
        rows = ledger.recent(conn, account.id, 100)
    return [row.project_id for row in rows if row.kind == "charge"]


def project_count(server: LiveServer, account: Account) -> int:
    with server.services.db.read() as conn:
        query = select(func.count()).where(projects.c.account_id == account.id)
        return int(conn.execute(query).scalar_one())


def test_a_create_whose_answers_are_lost_charges_once(
    server: LiveServer, account: Account, proxy: FaultProxy, tmp_path: Path
) -> None:
    # The first two creates reach the server and are done there, but the client never hears.
    proxy.rules.append(Rule("POST", "/v1/ai-image-generator", [DROP_AFTER, DROP_AFTER]))
    with darkroom.Client(token=account.key, base_url=proxy.url, max_retries=3) as sdk:
        project = sdk.v1.ai_image_generator.generate(
            image_count=2, style=PROMPT, resolution="640px", download_directory=tmp_path
        )
    attempts = list(creates(proxy))
    assert [a.action for a in attempts] == [DROP_AFTER, DROP_AFTER, "pass"]
    keys = {a.headers["idempotency-key"] for a in attempts}
    assert len(keys) == 1  # the same key on every attempt
    assert project.status == "complete"
    assert project.downloaded_paths is not None
    assert len(project.downloaded_paths) == 2
    assert project_count(server, account) == 1
    assert charges(server, account) == [project.id]
    assert server.balance(account) == 10_000 - 10


def test_server_errors_and_lost_connections_are_retried_everywhere(
    server: LiveServer, account: Account, proxy: FaultProxy, tmp_path: Path
) -> None:
    proxy.rules += [
        Rule("POST", "/v1/ai-image-generator", ["503", "502"]),
        Rule("GET", "/v1/image-projects/", ["500", DROP_BEFORE]),
        Rule("GET", "/downloads/", ["503", DROP_BEFORE]),
    ]
    with darkroom.Client(token=account.key, base_url=proxy.url, max_retries=2) as sdk:
        project = sdk.v1.ai_image_generator.generate(
            image_count=1, style=PROMPT, resolution="640px", download_directory=tmp_path
        )
    assert project.status == "complete"
    assert project.downloaded_paths is not None
    assert Path(project.downloaded_paths[0]).stat().st_size == project.downloads[0].bytes
    assert len(list(creates(proxy))) == 3
    downloads = [s.action for s in proxy.seen if s.path.startswith("/downloads/")]
    assert downloads == ["503", DROP_BEFORE, "pass"]
    assert charges(server, account) == [project.id]


def test_rate_limits_wait_as_long_as_retry_after_says(
    server: LiveServer, account: Account, proxy: FaultProxy
) -> None:
    proxy.rules.append(Rule("POST", "/v1/ai-image-generator", ["429 Retry-After=1"]))
    with darkroom.Client(token=account.key, base_url=proxy.url) as sdk:
        started = time.monotonic()
        created = sdk.v1.ai_image_generator.create(image_count=1, style=PROMPT)
        waited = time.monotonic() - started
    assert 1.0 <= waited < 2.0
    attempts = list(creates(proxy))
    assert len(attempts) == 2
    assert charges(server, account) == [created.id]


def test_retries_give_up_with_the_last_error(
    server: LiveServer, account: Account, proxy: FaultProxy
) -> None:
    proxy.rules.append(Rule("GET", "/v1/account", [], then="503"))
    proxy.rules.append(Rule("GET", "/v1/models", [], then="429 Retry-After=0"))
    with darkroom.Client(token=account.key, base_url=proxy.url, max_retries=2) as sdk:
        with pytest.raises(darkroom.ServerError) as server_error:
            sdk.v1.account.list()
        with pytest.raises(darkroom.RateLimitError) as limited:
            sdk.v1.models.list()
    assert server_error.value.status_code == 503
    assert limited.value.retry_after == 0
    assert sum(s.path == "/v1/account" for s in proxy.seen) == 3
    assert sum(s.path == "/v1/models" for s in proxy.seen) == 3


def test_client_errors_are_not_retried(
    server: LiveServer, account: Account, proxy: FaultProxy
) -> None:
    poor = server.account(credits=0)
    sdk = darkroom.Client(token=poor.key, base_url=proxy.url)
    with sdk, pytest.raises(darkroom.InsufficientCreditsError):
        sdk.v1.ai_image_generator.create(image_count=1, style=PROMPT)
    assert len(list(creates(proxy))) == 1


def test_async_retries_charge_once(
    server: LiveServer, account: Account, proxy: FaultProxy, tmp_path: Path
) -> None:
    proxy.rules.append(Rule("POST", "/v1/ai-image-generator", [DROP_AFTER, "500"]))

    async def main() -> darkroom.ImageProjectWithDownloads:
        async with darkroom.AsyncClient(token=account.key, base_url=proxy.url) as sdk:
            return await sdk.v1.ai_image_generator.generate(
                image_count=1, style=PROMPT, resolution="640px", download_directory=tmp_path
            )

    project = asyncio.run(main())
    assert project.status == "complete"
    assert len({a.headers["idempotency-key"] for a in creates(proxy)}) == 1
    assert len(list(creates(proxy))) == 3
    assert charges(server, account) == [project.id]


def test_without_the_long_poll_it_polls(
    server: LiveServer, account: Account, proxy: FaultProxy, tmp_path: Path
) -> None:
    """Against a server that ignores ``wait`` (the hosted API), generate polls every
    ``poll_interval`` seconds instead, and still finishes."""
    proxy.rules.append(Rule("GET", "/v1/image-projects/", [], then=STRIP_QUERY))
    with darkroom.Client(token=account.key, base_url=proxy.url, poll_interval=0.05) as sdk:
        project = sdk.v1.ai_image_generator.generate(
            image_count=1, style=PROMPT, resolution="640px", download_directory=tmp_path
        )
    assert project.status == "complete"
    polls = [s for s in proxy.seen if s.path.startswith("/v1/image-projects/")]
    assert polls
    assert all(s.action == STRIP_QUERY for s in polls)
