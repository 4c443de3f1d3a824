"""A node whose wall clock is off (a broken NTP, a VM restored from a snapshot): a render worker
60 s ahead of the database, or 30 s behind, beside healthy nodes. Every lease, heartbeat and
"is that node gone" is on the database's clock, so it takes no lease it should not, cancels no
healthy request, expires no healthy lease and sends no webhook twice; and its log says that its
clock is off.

The API node runs in this process, on the machine's clock, and the test plays a healthy render
worker and a healthy webhook sender beside it (a render lease and a delivery lease that it
holds); the shifted worker is a ``darkroom worker`` subprocess (tests/shifted_clock.py)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from darkroom.core.accounts import Principal
from darkroom.core.catalog import ImageSpec
from darkroom.core.projects import Project
from darkroom.store import webhooks as webhook_sql
from darkroom.store.tables import nodes, projects, webhook_deliveries
from tests.cluster import Process
from tests.conftest import LiveServer, ServerFactory
from tests.waiting import wait_until
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.slow

LEASE = 30.0  # seconds: the healthy leases held here outlast the test; both shifts pass a third
SPEC = ImageSpec(prompt="x", image_count=1, model="flux-schnell", resolution="1k")
SLOW = {"image_count": 2, "model": "seedream-v4", "resolution": "4k", "style": {"prompt": "y"}}


def project_row(server: LiveServer, project_id: str) -> Any:
    query = select(projects).where(projects.c.id == project_id)
    return server.services.db.query(lambda conn: conn.execute(query).one())


def shifted_worker(server: LiveServer, root: Path, shift: float) -> Process:
    """A ``darkroom worker`` on the server's database and storage, its clock ``shift`` s off."""
    settings = server.settings
    env = {
        **os.environ,
        "DARKROOM_DATABASE_URL": settings.sqlalchemy_url,
        "DARKROOM_STORAGE_URL": settings.storage_url or str(settings.data_dir),
        "DARKROOM_SECRET_KEY": "test-secret",
        "DARKROOM_ADMIN_TOKEN": "test-admin-token",
        "DARKROOM_LEASE_SECONDS": str(LEASE),
        "DARKROOM_RATE_LIMIT_PER_MINUTE": "0",
        "DARKROOM_WEBHOOKS_ALLOW_PRIVATE": "true",
        "DARKROOM_LOG_LEVEL": "info",
    }
    (root / "worker").mkdir()
    return Process(
        "shifted",
        ["worker", "--concurrency", "2", "--data-dir", str(root / "worker")],
        env,
        root / "shifted.log",
        launcher=("tests.shifted_clock", str(shift)),
    )


@pytest.mark.parametrize("shift", [60.0, -30.0], ids=["60s-ahead", "30s-behind"])
def test_a_worker_with_a_shifted_clock_takes_cancels_expires_and_resends_nothing(
    shift: float, server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory(workers=0, lease_seconds=LEASE)
    account = server.account()
    services = server.services
    receiver = Receiver()
    sync = ThreadPoolExecutor(1)
    try:
        with server.client(account) as http:
            hook = http.post("/v1/webhooks", json={"url": receiver.url})
            assert hook.status_code == 201, hook.text
            receiver.secret = hook.json()["secret"]

        # A healthy worker renders a job, and a healthy sender is sending its image.started.
        who = Principal(account.key_id, account.id, account.tier)
        [held] = services.jobs.submit_many([services.jobs.prepare(who, SPEC)])
        assert isinstance(held, Project)
        assert server.node.work.claim_next("node_healthy") is not None
        sending = services.db.query(
            lambda conn: conn.execute(
                select(webhook_deliveries.c.id).where(webhook_deliveries.c.project_id == held.id)
            ).scalar_one()
        )
        assert services.db.transact(
            lambda conn: webhook_sql.lease(conn, sending, "sender_healthy", 40)
        )
        # A synchronous OpenAI request waits for its images (its project is awaited by this
        # node), and a slower project waits to be rendered.
        answer = sync.submit(
            httpx.post,
            f"{server.url}/v1/images/generations",
            json={"prompt": "a lighthouse", "size": "256x256"},
            headers={"Authorization": f"Bearer {account.key}"},
            timeout=120,
        )
        with server.client(account) as http:
            wait_until(
                lambda: http.get("/v1/image-projects", params={"status": "queued"}).json()["data"],
                "the synchronous request's project",
                timeout=30,
            )
            slow = http.post("/v1/ai-image-generator", json=SLOW).json()["id"]

        worker = shifted_worker(server, tmp_path, shift)
        try:
            worker_node = wait_until(
                lambda: services.db.query(
                    lambda conn: conn.execute(
                        select(nodes.c.id).where(nodes.c.pid == worker.pid)
                    ).scalar_one_or_none()
                ),
                "the shifted worker to register",
                timeout=60,
            )

            def rendering_slow() -> bool:
                row = project_row(server, slow)
                return bool(row.status == "rendering" and row.lease_owner == worker_node)

            wait_until(rendering_slow, "the shifted worker to render the slow project", timeout=60)
            # A healthy node's sweep while it renders: the lease it took is one.
            assert server.node.recovery.sweep().requeued == 0

            # The synchronous request was not canceled: it got its image.
            done = answer.result(timeout=120)
            assert done.status_code == 200, done.text
            answered = done.json()["darkroom"]["project_id"]
            assert server.wait(account, slow, 60)["status"] == "complete"
            assert project_row(server, slow).attempts == 1  # rendered once
            # Its sender delivered what was due, but not what the healthy sender holds.
            wait_until(
                lambda: (
                    answered
                    in {r.event["payload"]["id"] for r in receiver.accepted("image.completed")}
                ),
                "the synchronous project's image.completed",
                timeout=30,
            )
            assert sending not in {r.webhook_id for r in receiver.received}
            # The healthy worker's job is still its own.
            row = project_row(server, held.id)
            assert (row.status, row.lease_owner, row.attempts) == ("rendering", "node_healthy", 1)
        finally:
            worker.close()
        way = "ahead of" if shift > 0 else "behind"
        said = worker.log.read_text()
        assert f"clock is {abs(shift):.0f}." in said and f"{way} the database's" in said, said
    finally:
        sync.shutdown(wait=False, cancel_futures=True)
        receiver.close()
