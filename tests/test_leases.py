"""The render queue across processes: fair claims, leases and fencing, recovery of jobs whose
worker died and of projects whose waiting request is gone, queue caps and queue positions.

These drive the worker's side (``Work``) and recovery directly on an API-only node's database,
as several worker processes would."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from darkroom.core.accounts import Principal
from darkroom.core.catalog import ImageSpec
from darkroom.core.errors import QueueFull
from darkroom.core.projects import Project, StoredImage
from darkroom.engine.registry import Backends
from darkroom.storage.files import new_attempt
from darkroom.store.database import utcnow
from darkroom.store.tables import ledger, projects, webhook_deliveries
from tests.backends import Stepping
from tests.conftest import Account, LiveServer, ServerFactory
from tests.waiting import wait_until

SPEC = ImageSpec(prompt="x", image_count=1, model="flux-schnell", resolution="1k")


def submit(server: LiveServer, account: Account, n: int = 1, **options: object) -> list[Project]:
    who = Principal(account.key_id, account.id, account.tier)
    jobs = server.services.jobs
    made = []
    for _ in range(n):
        [outcome] = jobs.submit_many([jobs.prepare(who, SPEC, **options)])  # type: ignore[arg-type]
        assert isinstance(outcome, Project), outcome
        made.append(outcome)
    return made


def row(server: LiveServer, project_id: str) -> dict[str, object]:
    with server.services.db.read() as conn:
        found = conn.execute(select(projects).where(projects.c.id == project_id)).one()
    return dict(found._mapping)


def ledger_kinds(server: LiveServer, project_id: str) -> list[str]:
    with server.services.db.read() as conn:
        query = select(ledger.c.kind).where(ledger.c.project_id == project_id)
        return sorted(conn.execute(query).scalars())


def expire_lease(server: LiveServer, project_id: str) -> None:
    """As if its worker's heartbeat stopped a lease ago."""
    with server.services.db.write() as conn:
        conn.execute(
            update(projects)
            .where(projects.c.id == project_id)
            .values(lease_until=utcnow() - timedelta(seconds=1))
        )


def test_claims_are_fair_across_accounts(server_factory: ServerFactory) -> None:
    """One account's backlog holds another account's single project up by one render at most."""
    server = server_factory(workers=0)
    busy, other = server.account(name="busy"), server.account(name="other")
    backlog = submit(server, busy, 5)
    [single] = submit(server, other)
    work = server.node.work
    order = []
    for _ in range(6):
        claimed = work.claim_next("node_a")
        assert claimed is not None
        order.append(claimed.id)
        assert work.complete("node_a", claimed.id, rendered_at=utcnow(), render_ms=1)
    assert order.index(single.id) <= 1
    assert [p for p in order if p != single.id] == [p.id for p in backlog]  # oldest first
    assert work.claim_next("node_a") is None


def test_a_worker_takes_only_its_models(server_factory: ServerFactory) -> None:
    server = server_factory(workers=0)
    account = server.account()
    [project] = submit(server, account)
    assert server.node.work.claim_next("gpu_b", ["z-image-turbo"]) is None
    claimed = server.node.work.claim_next("gpu_a", ["flux-schnell", "z-image-turbo"])
    assert claimed is not None and claimed.id == project.id
    assert row(server, project.id)["lease_owner"] == "gpu_a"


def test_a_worker_that_lost_its_lease_cannot_end_the_job(server_factory: ServerFactory) -> None:
    server = server_factory(workers=0, max_attempts=3)
    account = server.account()
    [project] = submit(server, account)
    work, recovery = server.node.work, server.node.recovery
    first = work.claim_next("node_a")
    assert first is not None and first.id == project.id
    assert work.renew("node_a", [project.id]).ids == {project.id}

    expire_lease(server, project.id)  # node_a stalls longer than its lease
    swept = recovery.sweep()
    assert swept.requeued == 1
    assert row(server, project.id)["status"] == "queued"
    second = work.claim_next("node_b")
    assert second is not None and second.attempts == 2

    # node_a wakes up: every write it tries is refused; its renew reports the loss.
    assert work.renew("node_a", [project.id]).ids == set()
    assert not work.holds("node_a", project.id)
    work.set_status_reason("node_a", project.id, "still here")
    assert not work.complete("node_a", project.id, rendered_at=utcnow(), render_ms=5)
    assert not work.fail("node_a", project.id, "late", "too late")
    assert work.hand_back("node_a", project.id) is None
    current = row(server, project.id)
    assert (current["status"], current["lease_owner"], current["status_reason"]) == (
        "rendering",
        "node_b",
        None,
    )

    stored = [StoredImage("ab" * 32, 10)]
    assert work.complete("node_b", project.id, rendered_at=utcnow(), render_ms=5, stored=stored)
    assert row(server, project.id)["status"] == "complete"
    assert ledger_kinds(server, project.id) == ["charge"]  # charged once, never refunded
    assert server.balance(account) == 10_000 - 5


def test_a_worker_cut_off_from_the_database_stops_its_render_at_its_lease_end(
    server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Its renewals hang (the database does not answer), and so does every read of the
    project: the render stops at its next step once the lease has ended on the worker's own
    monotonic clock (another worker may render the job from then on), and says "lease lost"."""
    backend = Stepping(steps=1500, step_seconds=0.02)  # 30 s, were it never stopped
    server = server_factory(
        Backends([backend]), workers=1, lease_seconds=1.5, shutdown_grace_seconds=0
    )
    account = server.account()
    cut_off = threading.Event()

    def no_answer(*_args: object) -> Any:
        cut_off.wait(60)
        raise RuntimeError("the database did not answer")

    work = server.node.work

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records if project.id in r.getMessage()]

    try:
        with caplog.at_level(logging.INFO, logger="darkroom.runner"):
            [project] = submit(server, account)
            assert backend.entered.wait(10)
            claimed = time.monotonic()
            monkeypatch.setattr(work, "renew", no_answer)
            monkeypatch.setattr(work, "holds", no_answer)
            wait_until(lambda: backend.stopped_at is not None, "the render to stop", timeout=20)
            stopped = time.monotonic() - claimed
            wait_until(
                lambda: any("lease lost" in line for line in said()), "its log line", timeout=5
            )
    finally:
        cut_off.set()
    assert backend.stopped_at is not None and backend.stopped_at < backend.steps
    assert not any("canceled" in line for line in said()), said()
    print(
        f"\ncut off: the render stopped at step {backend.stopped_at}, {stopped:.2f} s after "
        "it began (lease 1.5 s)"
    )


def test_a_job_out_of_attempts_fails_once_with_a_refund(server_factory: ServerFactory) -> None:
    server = server_factory(workers=0, max_attempts=1)
    account = server.account()
    [project] = submit(server, account)
    assert server.node.work.claim_next("node_a") is not None
    expire_lease(server, project.id)
    assert server.node.recovery.sweep().failed == 1
    assert server.node.recovery.sweep().failed == 0  # a second sweep moves nothing
    failed = row(server, project.id)
    assert (failed["status"], failed["error_code"], failed["credits_charged"]) == (
        "error",
        "worker_lost",
        0,
    )
    assert ledger_kinds(server, project.id) == ["charge", "refund"]
    assert server.balance(account) == 10_000


def test_a_live_lease_is_left_alone(server_factory: ServerFactory) -> None:
    """No sweep, and no start of another node, touches a job leased by a live worker."""
    server = server_factory(workers=0)
    account = server.account()
    [project] = submit(server, account)
    assert server.node.work.claim_next("node_a") is not None
    assert server.node.recovery.sweep().requeued == 0
    other = server_factory(workers=1)  # starts, sweeps, and its workers look for jobs
    assert other.node.heartbeat.beats >= 1
    assert row(server, project.id)["lease_owner"] == "node_a"


def test_a_project_awaited_by_a_gone_node_is_canceled_and_refunded(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(workers=0)
    account = server.account()
    [awaited] = submit(server, account, awaited=True)
    [plain] = submit(server, account)
    assert row(server, awaited.id)["awaited_by"] == server.node.id
    assert server.node.recovery.sweep().abandoned == 0  # its node is alive

    server.stop()  # the node that held the waiting request is gone
    swept = server.node.recovery.sweep()
    assert swept.abandoned == 1
    assert row(server, awaited.id)["status"] == "canceled"
    assert ledger_kinds(server, awaited.id) == ["charge", "refund"]
    assert row(server, plain.id)["status"] == "queued"  # nobody waits on it: it still renders


def deliveries_of(server: LiveServer, project_id: str) -> list[str]:
    """The webhook events written about a project, sorted."""
    with server.services.db.read() as conn:
        query = select(webhook_deliveries.c.event).where(
            webhook_deliveries.c.project_id == project_id
        )
        return sorted(conn.execute(query).scalars())


def test_an_awaited_project_completed_before_its_node_is_seen_gone_is_refunded(
    server_factory: ServerFactory,
) -> None:
    """The order of events the sweep used to miss: a worker completes a project whose waiting
    request died with its node before any node has noticed (that takes a lease). Nobody got the
    images: the project ends canceled and refunded, its images are removed, and its webhook
    receivers hear ``image.canceled``, never ``image.completed``. A project whose answer its
    node wrote (``answered``) stays complete and charged."""
    server = server_factory(workers=0, allow_private_webhooks=True)
    account = server.account()
    with server.client(account) as http:
        made = http.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hooks"})
    assert made.status_code == 201, made.text
    lost, delivered, older = submit(server, account, 3, awaited=True)
    with server.services.db.write() as conn:  # as a node of an older version writes it
        conn.execute(update(projects).where(projects.c.id == older.id).values(answer_pending=False))
    work, files = server.node.work, server.services.files
    for project in (lost, delivered, older):
        claimed = work.claim_next("node_gpu")
        assert claimed is not None and claimed.id == project.id
        [key] = files.save_outputs(claimed.id, new_attempt(), [b"an image"], "png")
        stored = [StoredImage(hashlib.sha256(b"an image").hexdigest(), 8, key)]
        assert work.complete(
            "node_gpu", claimed.id, rendered_at=utcnow(), render_ms=1, stored=stored
        )
    assert server.services.jobs.answered(delivered.id)  # its request wrote the answer
    assert not server.services.jobs.answered(delivered.id)  # once
    assert deliveries_of(server, lost.id) == ["image.started"]  # completed: not yet news
    assert server.node.recovery.sweep().abandoned == 0  # their node is alive

    server.stop()  # the node whose requests waited is gone (before answering for one)
    assert server.node.recovery.sweep().abandoned == 1
    refunded = row(server, lost.id)
    assert (refunded["status"], refunded["credits_charged"], refunded["error_code"]) == (
        "canceled",
        0,
        "abandoned",
    )
    assert ledger_kinds(server, lost.id) == ["charge", "refund"]
    assert server.stored(lost.id) == []
    assert deliveries_of(server, lost.id) == ["image.canceled", "image.started"]
    assert row(server, delivered.id)["status"] == "complete"
    assert ledger_kinds(server, delivered.id) == ["charge"]
    assert len(server.stored(delivered.id)) == 1
    assert deliveries_of(server, delivered.id) == ["image.completed", "image.started"]
    # An older node never marks its answers delivered: its complete projects stay charged.
    assert (row(server, older.id)["status"], ledger_kinds(server, older.id)) == (
        "complete",
        ["charge"],
    )
    assert server.balance(account) == 10_000 - 2 * 5
    assert server.node.recovery.sweep().abandoned == 0  # a second sweep moves nothing


def test_queue_caps_refuse_before_charging(server_factory: ServerFactory) -> None:
    server = server_factory(workers=0, queue_max_per_account=2, queue_max_total=3)
    first, second = server.account(name="first"), server.account(name="second")
    submit(server, first, 2)
    with server.client(first) as http:
        refused = http.post(
            "/v1/ai-image-generator", json={"image_count": 1, "style": {"prompt": "x"}}
        )
    assert refused.status_code == 429
    assert "2 projects waiting" in refused.json()["message"]
    assert float(refused.headers["retry-after"]) >= 1
    assert server.balance(first) == 10_000 - 2 * 5
    submit(server, second)
    who = Principal(second.key_id, second.id, second.tier)
    jobs = server.services.jobs
    [outcome] = jobs.submit_many([jobs.prepare(who, SPEC)])
    assert isinstance(outcome, QueueFull) and "queue is full" in outcome.message
    assert server.balance(second) == 10_000 - 5
    with server.client(second) as http:
        openai = http.post("/v1/images/generations", json={"prompt": "x", "size": "256x256"})
    assert openai.status_code == 429
    assert "queue is full" in openai.json()["error"]["message"]


def test_queued_projects_show_their_place(server_factory: ServerFactory) -> None:
    server = server_factory(workers=0)
    busy, other = server.account(name="busy"), server.account(name="other")
    backlog = submit(server, busy, 3)
    [single] = submit(server, other)
    with server.client(other) as http:
        body = http.get(f"/v1/image-projects/{single.id}").json()
    assert body["status"] == "queued"
    assert body["queue_position"] == 2  # after the busy account's oldest, by fair turns
    assert body["eta_seconds"] is None  # no worker is alive to serve it
    with server.client(busy) as http:
        last = http.get(f"/v1/image-projects/{backlog[-1].id}").json()
    assert last["queue_position"] == 4

    worker = server_factory(workers=1)  # renders them all; positions disappear at the end
    for project in backlog:
        assert worker.wait(busy, project.id)["status"] == "complete"
    assert "queue_position" not in worker.wait(other, single.id)
