"""Shared fixtures: a real darkroom server (uvicorn on loopback) over a temporary data directory,
and accounts with API keys."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from darkroom.api.app import app_for
from darkroom.core import accounts
from darkroom.engine.registry import Backends
from darkroom.services import Services, build_services
from darkroom.settings import Settings


@dataclass
class Account:
    id: str
    key: str
    key_id: str
    tier: str


class LiveServer:
    """darkroom served by uvicorn in a background thread on a free loopback port."""

    def __init__(self, settings: Settings, backends: Backends | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", settings.port))
        self.port = self.sock.getsockname()[1]
        self.settings = settings.model_copy(update={"port": self.port})
        self.url = f"http://127.0.0.1:{self.port}"
        self.services: Services = build_services(self.settings, backends)
        config = uvicorn.Config(
            app_for(self.services), log_level="warning", access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("darkroom test server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()

    def account(self, tier: str = "business", credits: int = 10_000, name: str = "t") -> Account:
        account_id, key = accounts.create_account(
            self.services.db,
            name=name,
            tier=tier,
            credits_amount=credits,
            known_tiers=list(self.services.catalog.tiers),
        )
        return Account(id=account_id, key=key.key, key_id=key.id, tier=tier)

    def balance(self, account: Account) -> int:
        from darkroom.store import ledger

        with self.services.db.read() as conn:
            value = ledger.balance(conn, account.id)
        assert value is not None
        return value

    def client(self, account: Account | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {account.key}"} if account else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def wait(self, account: Account, project_id: str, timeout: float = 30) -> dict[str, Any]:
        """Poll until the project is terminal; the final GET body."""
        deadline = time.monotonic() + timeout
        with self.client(account) as client:
            while True:
                body: dict[str, Any] = client.get(f"/v1/image-projects/{project_id}").json()
                if body["status"] in ("complete", "error", "canceled"):
                    return body
                if time.monotonic() > deadline:
                    raise AssertionError(f"project {project_id} stuck in {body['status']}")
                time.sleep(0.01)


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "port": 0,
        "secret_key": "test-secret",
        "rate_limit_per_minute": 0,
        "workers": 2,
    }
    values.update(overrides)
    return Settings(**values)


ServerFactory = Callable[..., LiveServer]


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start servers on ``tmp_path/data`` (or a given data dir); all are stopped at the end."""
    started: list[LiveServer] = []

    def start(backends: Backends | None = None, **overrides: Any) -> LiveServer:
        data_dir = overrides.pop("data_dir", tmp_path / "data")
        server = LiveServer(make_settings(data_dir, **overrides), backends)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.thread.is_alive():
            server.stop()


@pytest.fixture
def server(server_factory: ServerFactory) -> LiveServer:
    return server_factory()


@pytest.fixture
def account(server: LiveServer) -> Account:
    return server.account()
