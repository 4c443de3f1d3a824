"""``POST /v1/image-projects/{id}/cancel``: a queued or rendering project becomes canceled, is
refunded in full, and its render stops at the next step; the SDK and CLI expose it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from darkroom import Client, GenerateTimeoutError
from darkroom.engine.registry import Backends
from tests.backends import Slow, Stepping
from tests.conftest import LiveServer, ServerFactory
from tests.waiting import wait_until

BODY = {"image_count": 2, "style": {"prompt": "a red kite"}}


def create(server: LiveServer, key_account: object, body: dict[str, object] = BODY) -> str:
    with server.client(key_account) as client:  # type: ignore[arg-type]
        response = client.post("/v1/ai-image-generator", json=body)
    assert response.status_code == 200, response.text
    project_id: str = response.json()["id"]
    return project_id


def test_cancel_rendering_stops_at_the_next_step_and_refunds(
    server_factory: ServerFactory,
) -> None:
    backend = Stepping(steps=500, step_seconds=0.02)  # 10 s if never canceled
    server = server_factory(Backends([backend]), workers=1)
    account = server.account(credits=1000)
    project_id = create(server, account)
    assert backend.entered.wait(10)
    assert server.balance(account) < 1000
    wait_until(lambda: backend.step >= 3, "the render to be a few steps in")
    with server.client(account) as client:
        response = client.post(f"/v1/image-projects/{project_id}/cancel")
    canceled_at = backend.step  # the cancel has committed: the render learns of it now
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "canceled"
    assert body["credits_charged"] == 0
    assert server.balance(account) == 1000
    # The render noticed within a step or two, long before its 500 steps.
    stopped_at = wait_until(lambda: backend.stopped_at, "the render to stop", timeout=5)
    assert stopped_at <= canceled_at + 2
    assert server.stored(project_id) == []
    # It stays canceled, and the worker is free for the next project.
    assert server.wait(account, project_id)["status"] == "canceled"
    backend.steps = 1
    follow_up = create(server, account)
    assert server.wait(account, follow_up)["status"] == "complete"


def test_cancel_queued_project_never_renders(server_factory: ServerFactory) -> None:
    slow = Slow(delay=30)
    server = server_factory(Backends([slow]), workers=1)
    account = server.account(credits=1000)
    first = create(server, account)
    assert slow.entered.wait(10)
    second = create(server, account)
    with server.client(account) as client:
        assert client.get(f"/v1/image-projects/{second}").json()["status"] == "queued"
        canceled = client.post(f"/v1/image-projects/{second}/cancel")
        assert canceled.status_code == 200
        assert canceled.json()["status"] == "canceled"
        again = client.post(f"/v1/image-projects/{second}/cancel")  # idempotent
        assert again.status_code == 200 and again.json()["status"] == "canceled"
    slow.release.set()
    assert server.wait(account, first)["status"] == "complete"
    with server.client(account) as client:
        assert client.get(f"/v1/image-projects/{second}").json()["status"] == "canceled"
    # Only the first project was paid for.
    assert server.balance(account) == 1000 - server.wait(account, first)["credits_charged"]


def test_cancel_refusals(server: LiveServer) -> None:
    account = server.account(credits=1000)
    other = server.account(credits=1000)
    project_id = create(server, account)
    assert server.wait(account, project_id)["status"] == "complete"
    balance = server.balance(account)
    with server.client(account) as client:
        done = client.post(f"/v1/image-projects/{project_id}/cancel")
        assert done.status_code == 409
        assert "already ended (complete)" in done.json()["message"]
        assert client.post("/v1/image-projects/img_nope/cancel").status_code == 404
    with server.client(other) as client:
        assert client.post(f"/v1/image-projects/{project_id}/cancel").status_code == 404
    with server.client() as client:
        assert client.post(f"/v1/image-projects/{project_id}/cancel").status_code == 401
    assert server.balance(account) == balance


def test_sdk_cancel_and_cancel_on_timeout(server_factory: ServerFactory) -> None:
    slow = Slow(delay=30)
    server = server_factory(Backends([slow]), workers=1)
    account = server.account(credits=1000)
    with Client(token=account.key, base_url=server.url) as client:
        created = client.v1.ai_image_generator.create(**BODY)  # type: ignore[arg-type]
        project = client.v1.image_projects.cancel(id=created.id)
        assert project.status == "canceled" and project.credits_charged == 0
        assert server.balance(account) == 1000

        with pytest.raises(GenerateTimeoutError) as caught:
            client.v1.ai_image_generator.generate(
                **BODY,  # type: ignore[arg-type]
                timeout=0.8,
                cancel_on_timeout=True,
                download_outputs=False,
            )
        assert caught.value.project.status == "canceled"
        assert "canceled and refunded" in str(caught.value)
        assert server.balance(account) == 1000

        with pytest.raises(GenerateTimeoutError) as left:  # the default leaves it running
            client.v1.ai_image_generator.generate(**BODY, timeout=0.5, download_outputs=False)  # type: ignore[arg-type]
        assert left.value.project.status in ("queued", "rendering")
        assert server.balance(account) < 1000
    slow.release.set()


def test_cli_cancel(server_factory: ServerFactory, tmp_path: Path) -> None:
    slow = Slow(delay=30)
    server = server_factory(Backends([slow]), workers=1)
    account = server.account(credits=1000)
    project_id = create(server, account)
    env = {**os.environ, "DARKROOM_API_KEY": account.key, "DARKROOM_BASE_URL": server.url}
    command = [sys.executable, "-m", "darkroom.cli.main"]
    done = subprocess.run(
        [*command, "projects", "cancel", project_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "canceled" in done.stdout
    assert server.balance(account) == 1000
    timed_out = subprocess.run(
        [*command, "generate", "a kite", "--timeout", "0.8", "--cancel-on-timeout", "-q"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert timed_out.returncode == 9, timed_out.stderr
    assert "canceled and refunded" in timed_out.stderr
    assert server.balance(account) == 1000
    slow.release.set()
