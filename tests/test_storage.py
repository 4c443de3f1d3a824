"""What a project leaves in storage, whichever store the run uses (the data directory, or S3 on
S3 passes): only the images its completing attempt recorded; nothing once it failed, was
canceled or deleted; and with a retention period, nothing after it (the project says so)."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update

from darkroom.engine.registry import Backends
from darkroom.storage.objects import StorageError
from darkroom.store.database import utcnow
from darkroom.store.tables import projects
from tests import faults
from tests.backends import Failing, Slow
from tests.conftest import Account, LiveServer, ServerFactory
from tests.waiting import wait_until

BODY = {"image_count": 2, "style": {"prompt": "a lighthouse"}}


def create(server: LiveServer, account: Account, body: dict[str, object] = BODY) -> str:
    with server.client(account) as client:
        response = client.post("/v1/ai-image-generator", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def stray(server: LiveServer, project_id: str) -> str:
    """What an attempt cut off mid-upload leaves: an image under an attempt of its own."""
    key = f"images/{project_id}/cutoff/{project_id}-1.png"
    server.services.files.store.put(key, b"half an image", content_type="image/png")
    return key


def test_a_complete_project_keeps_only_its_recorded_images(
    server_factory: ServerFactory,
) -> None:
    backend = Slow()
    server = server_factory(backends=Backends([backend]))
    account = server.account()
    project_id = create(server, account)
    assert backend.entered.wait(10)
    left = stray(server, project_id)
    backend.release.set()
    project = server.wait(account, project_id)
    assert project["status"] == "complete"
    wait_until(lambda: left not in server.stored(project_id))  # removed once it completed
    kept = server.stored(project_id)
    assert len(kept) == 2
    recorded = server.services.files.output_key
    assert sorted(kept) == sorted(
        recorded(server._project(project_id), n) for n in (1, 2)
    )  # the ones its downloads serve


def test_a_failed_project_leaves_nothing(server_factory: ServerFactory) -> None:
    server = server_factory(backends=Backends([Failing()]))
    account = server.account()
    project_id = create(server, account)
    stray(server, project_id)  # an earlier attempt's
    assert server.wait(account, project_id)["status"] == "error"
    wait_until(lambda: server.stored(project_id) == [])


def test_a_canceled_project_leaves_nothing(server_factory: ServerFactory) -> None:
    backend = Slow()
    server = server_factory(backends=Backends([backend]))
    account = server.account()
    project_id = create(server, account)
    assert backend.entered.wait(10)
    stray(server, project_id)
    with server.client(account) as client:
        assert client.post(f"/v1/image-projects/{project_id}/cancel").status_code == 200
    backend.release.set()  # the render ends; its images are not kept
    assert server.wait(account, project_id)["status"] == "canceled"
    wait_until(lambda: server.stored(project_id) == [])


def test_retention_deletes_old_images_and_the_project_says_so(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(retention_days=1)
    account = server.account()
    old, recent = create(server, account), create(server, account)
    before = {pid: server.wait(account, pid) for pid in (old, recent)}
    own_link = server.services.signer.sign(f"{old}-1.png", int(time.time()) + 600)
    assert httpx.get(own_link, follow_redirects=True).status_code == 200
    # A day and a bit from now, only the first project is past the retention period.
    later = utcnow() + timedelta(days=1, seconds=1)
    with server.services.db.engine.begin() as conn:
        conn.execute(
            update(projects)
            .where(projects.c.id == recent)
            .values(completed_at=utcnow() + timedelta(hours=2))
        )
    assert server.node.retention.sweep(later) == 1
    after = server.wait(account, old)
    assert after["status"] == "complete"
    assert after["downloads"] == []
    assert after["outputs_deleted_at"] is not None
    assert "retention" in after["status_reason"]
    assert server.stored(old) == []
    for item in before[old]["downloads"]:
        assert httpx.get(item["url"]).status_code in (404, 410)
    gone = httpx.get(own_link)
    assert gone.status_code == 410
    assert "retention" in gone.json()["message"]
    # The other one is untouched, and a second sweep finds nothing more.
    assert len(server.wait(account, recent)["downloads"]) == 2
    assert len(server.stored(recent)) == 2
    assert server.node.retention.sweep(later) == 0


def test_retention_is_off_by_default(server: LiveServer, account: Account) -> None:
    project_id = create(server, account)
    server.wait(account, project_id)
    assert not server.node.retention.enabled
    assert len(server.stored(project_id)) == 2


def test_a_storage_that_refuses_writes_ends_the_render_with_a_refund(
    server: LiveServer, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = server.services.files.store
    put = store.put

    def full(key: str, data: bytes, *, content_type: str) -> None:
        if key.endswith("-2.png"):
            raise StorageError("storage: the disk is full")
        put(key, data, content_type=content_type)

    monkeypatch.setattr(store, "put", full)
    balance = server.balance(account)
    project_id = create(server, account)
    project = server.wait(account, project_id)
    assert project["status"] == "error"
    assert project["error"]["code"] == "storage_error"
    assert "the disk is full" in project["error"]["message"]
    assert project["credits_charged"] == 0
    assert server.balance(account) == balance
    wait_until(lambda: server.stored(project_id) == [])  # image 1 did not stay


@pytest.mark.parametrize(
    ("fault", "reason"),
    [(faults.FULL, "storage full"), (faults.REFUSED, "storage refused the write")],
)
def test_a_full_or_refusing_store_ends_the_render_refunded_and_the_server_keeps_serving(
    server: LiveServer, account: Account, monkeypatch: pytest.MonkeyPatch, fault: str, reason: str
) -> None:
    """A full disk (ENOSPC) or bucket (QuotaExceeded), and a read-only disk (EROFS) or a bucket
    that denies the write (AccessDenied), injected where the store writes: the render ends in
    error with a reason that says which, a full refund and nothing left behind; the server goes
    on answering, and once the fault is lifted a new render completes."""
    store = server.services.files.store
    balance = server.balance(account)
    faults.refuse_writes(monkeypatch, store, fault)

    project_id = create(server, account)
    project = server.wait(account, project_id)
    assert project["status"] == "error"
    assert project["error"]["code"] == "storage_error"
    assert project["error"]["message"].startswith(reason), project["error"]["message"]
    assert project["credits_charged"] == 0
    assert server.balance(account) == balance
    wait_until(lambda: server.stored(project_id) == [])
    local_root = getattr(store, "root", None)
    if local_root is not None:  # not even a half-written temporary file
        assert not list(local_root.rglob(".tmp-*"))

    # The server keeps serving meanwhile: reads answer, and a create is taken (and refunded).
    with server.client(account) as client:
        assert client.get(f"/v1/image-projects/{project_id}").status_code == 200
        assert client.get("/healthz").status_code == 200
    second = server.wait(account, create(server, account))
    assert second["status"] == "error" and second["error"]["message"].startswith(reason)
    assert server.balance(account) == balance

    monkeypatch.undo()  # room again
    done = server.wait(account, create(server, account))
    assert done["status"] == "complete"
    assert len(server.stored(done["id"])) == 2
    assert server.balance(account) == balance - done["credits_charged"]
