"""``/healthz`` (the process answers) and ``/readyz`` (database, workers, webhook sender,
backends and their loaded models), including the failures that make a server not ready."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine

from darkroom.core.catalog import Catalog
from darkroom.observe.logs import RequestIdFilter
from tests.conftest import Account, Databases, LiveServer, ServerFactory

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the hub


@contextlib.contextmanager
def database_unreachable(server: LiveServer, databases: Databases) -> Iterator[None]:
    """Point the server's engine at a database that cannot be opened."""
    db = server.services.db
    working, broken = db.engine, create_engine(databases.unreachable())
    db.engine = broken
    try:
        yield
    finally:
        db.engine = working
        broken.dispose()


def test_healthz_answers(server: LiveServer) -> None:
    answer = httpx.get(f"{server.url}/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


def test_readyz_reports_database_workers_webhooks_and_backends(server: LiveServer) -> None:
    answer = httpx.get(f"{server.url}/readyz")
    assert answer.status_code == 200
    assert answer.json() == {
        "ready": True,
        "storage": True,
        "storage_location": server.services.files.store.location,
        "database": True,
        "workers": True,
        "webhooks": True,
        "heartbeat": True,
        # SQLite: other processes' changes are polled for; PostgreSQL signals them.
        "notifications": "poll" if server.services.db.is_sqlite else "listen",
        "node": {"id": server.node.id, "kind": "embedded"},
        "backends": {"preview": {"loaded": True}},
        "queue_depth": 0,
    }


def test_not_ready_while_the_database_is_unreachable(
    server: LiveServer,
    account: Account,
    databases: Databases,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.handler.addFilter(RequestIdFilter())  # as the handler of logs.configure does
    with database_unreachable(server, databases), server.client(account) as http:
        ready = http.get("/readyz")
        crashed = http.get("/v1/account")
        scrape = http.get("/metrics")
    assert ready.status_code == 503
    body = ready.json()
    assert (body["ready"], body["database"], body["workers"]) == (False, False, True)
    assert body["database_error"] == "OperationalError"
    if server.services.db.is_sqlite:
        # A database file that cannot be opened is no outage to wait out: an unhandled error,
        # still a JSON answer with its request id, logged under that id.
        assert crashed.status_code == 500
        assert crashed.json() == {"message": "Internal server error"}
        request_id = crashed.headers["x-request-id"]
        crash_lines = [r for r in caplog.records if r.getMessage().startswith("unhandled error")]
        assert [getattr(r, "request_id", None) for r in crash_lines] == [request_id]
    else:
        # A PostgreSQL server that refuses connections is an outage: tried again for the
        # request's patience, then a 503 telling the caller when to come back.
        assert crashed.status_code == 503, crashed.text
        assert "unavailable" in crashed.json()["message"]
        assert int(crashed.headers["retry-after"]) >= 1
    # The scrape goes on without what it reads from the database.
    assert scrape.status_code == 200
    assert "darkroom_http_requests_total" in scrape.text
    assert "darkroom_jobs_active" not in scrape.text
    assert "darkroom_queue_depth" not in scrape.text
    assert httpx.get(f"{server.url}/readyz").status_code == 200


def test_not_ready_once_the_workers_have_stopped(server: LiveServer) -> None:
    loop = server.server.servers[0].get_loop()
    asyncio.run_coroutine_threadsafe(server.node.runner.stop(0), loop).result(10)
    answer = httpx.get(f"{server.url}/readyz")
    assert answer.status_code == 503
    assert answer.json()["ready"] is False
    assert answer.json()["workers"] is False
    assert answer.json()["database"] is True


def test_an_api_only_node_is_ready_without_workers(server_factory: ServerFactory) -> None:
    server = server_factory(workers=0)
    answer = httpx.get(f"{server.url}/readyz")
    assert answer.status_code == 200
    assert answer.json()["workers"] is True
    assert answer.json()["webhooks"] is True


KEYS = {"gemini": "GEMINI_API_KEY", "openai": "OPENAI_API_KEY", "seedream": "ARK_API_KEY"}


def hosted(vendor: str) -> list[str]:
    """The shipped catalog's models on ``vendor``'s backend."""
    catalog = Catalog.load(None)
    return sorted(name for name, model in catalog.models.items() if model.backend == vendor)


def test_readyz_lists_the_models_the_diffusers_backend_holds(
    server_factory: ServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.tiny_pipelines import build_flux

    for name in KEYS.values():
        monkeypatch.delenv(name, raising=False)
    flux = build_flux(tmp_path / "flux")
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        f'[models.flux-schnell.weights]\nsource = "{flux}"\nmax_sequence_length = 64\n'
    )
    server = server_factory(preview_only=False, catalog=catalog, device="cpu")
    before = httpx.get(f"{server.url}/readyz").json()["backends"]
    assert before == {
        "diffusers": {"loaded_models": [], "device": "cpu"},
        "preview": {"loaded": True},
        # the hosted models' vendors, each model of the shipped catalog: no key is set here
        **{
            vendor: {"models": dict.fromkeys(hosted(vendor), f"{key} is not set")}
            for vendor, key in KEYS.items()
        },
    }
    account = server.account()
    body = {"image_count": 1, "model": "flux-schnell", "resolution": "640px"}
    with server.client(account) as http:
        created = http.post("/v1/ai-image-generator", json=body | {"style": {"prompt": "x"}})
        project_id = created.json()["id"]
        ended = http.get(f"/v1/image-projects/{project_id}", params={"wait": 60}).json()
    assert ended["status"] == "complete", ended
    after = httpx.get(f"{server.url}/readyz").json()["backends"]
    assert after["diffusers"] == {"loaded_models": ["flux-schnell"], "device": "cpu"}
