"""No project stays non-terminal forever: restarts resume queued jobs and re-run or fail (with a
refund) the ones that were rendering; backend failures end in error with a refund."""

from __future__ import annotations

from sqlalchemy import select

from darkroom.engine.base import RenderRequest
from darkroom.engine.preview import PreviewBackend
from darkroom.engine.registry import Backends
from darkroom.store.tables import ledger, projects
from tests.backends import Crashing, Failing, Stuck
from tests.conftest import Account, LiveServer, ServerFactory

BODY = {"image_count": 1, "model": "flux-schnell", "resolution": "1k", "style": {"prompt": "x"}}


def create(server: LiveServer, account: Account, n: int = 1) -> list[str]:
    with server.client(account) as client:
        return [client.post("/v1/ai-image-generator", json=BODY).json()["id"] for _ in range(n)]


def statuses(server: LiveServer, ids: list[str]) -> dict[str, tuple[str, int]]:
    with server.services.db.read() as conn:
        rows = conn.execute(
            select(projects.c.id, projects.c.status, projects.c.attempts).where(
                projects.c.id.in_(ids)
            )
        ).all()
    return {r.id: (r.status, r.attempts) for r in rows}


def test_restart_reruns_rendering_and_resumes_queued(server_factory: ServerFactory) -> None:
    stuck = Stuck()
    first = server_factory(Backends([stuck]), workers=1, shutdown_grace_seconds=0)
    account = first.account()
    ids = create(first, account, 4)
    assert stuck.entered.wait(10)
    first.stop()  # the render is cut off and handed back at once; three never started
    before = statuses(first, ids)
    assert before[ids[0]] == ("queued", 1)
    assert {before[i] for i in ids[1:]} == {("queued", 0)}

    second = server_factory(workers=1)  # same data dir, a working backend
    stuck.release.set()
    finals = [second.wait(account, i) for i in ids]
    assert [f["status"] for f in finals] == ["complete"] * 4
    after = statuses(second, ids)
    assert after[ids[0]] == ("complete", 2)
    started = [f["started_at"] for f in finals]
    assert started == sorted(started)  # resumed in submission order
    assert second.balance(account) == 10_000 - 4 * 5


def test_restart_fails_and_refunds_a_job_out_of_attempts(server_factory: ServerFactory) -> None:
    stuck = Stuck()
    first = server_factory(Backends([stuck]), workers=1, shutdown_grace_seconds=0, max_attempts=1)
    account = first.account()
    [project_id] = create(first, account)
    assert stuck.entered.wait(10)
    first.stop()
    second = server_factory(max_attempts=1)
    stuck.release.set()
    final = second.wait(account, project_id)
    assert final["status"] == "error"
    assert final["error"]["code"] == "worker_lost"
    assert final["credits_charged"] == 0
    assert final["downloads"] == []
    assert second.balance(account) == 10_000


def test_backend_failure_is_error_with_refund(server_factory: ServerFactory) -> None:
    server = server_factory(Backends([Failing()]))
    account = server.account()
    [project_id] = create(server, account)
    final = server.wait(account, project_id)
    assert final["status"] == "error"
    assert final["error"] == {"code": "gpu_on_fire", "message": "the GPU is on fire"}
    assert final["credits_charged"] == 0
    assert server.balance(account) == 10_000
    with server.services.db.read() as conn:
        kinds = (
            conn.execute(
                select(ledger.c.kind).where(ledger.c.project_id == project_id).order_by(ledger.c.id)
            )
            .scalars()
            .all()
        )
    assert kinds == ["charge", "refund"]


def test_unexpected_backend_crash_is_error_with_refund(server_factory: ServerFactory) -> None:
    server = server_factory(Backends([Crashing()]))
    account = server.account()
    [project_id] = create(server, account)
    final = server.wait(account, project_id)
    assert final["status"] == "error"
    assert final["error"]["code"] == "backend_error"
    assert "segfault" not in final["error"]["message"]  # no internals leak
    assert server.balance(account) == 10_000


def test_missing_backend_is_error_with_refund(server_factory: ServerFactory) -> None:
    class Other:
        name = "other"

        def render(self, request: RenderRequest) -> list[bytes]:
            return PreviewBackend().render(request)

    api = server_factory(workers=0)  # takes the project; renders nothing
    account = api.account()
    [project_id] = create(api, account)
    # A worker on the same database that does not run the model's backend takes the job: it
    # ends in error, refunded.
    worker = server_factory(Backends([Other()]))
    final = api.wait(account, project_id)
    assert final["error"]["code"] == "backend_unavailable"
    assert api.balance(account) == 10_000
    # A server that does not run it refuses the model up front, before any charge.
    with worker.client(account) as client:
        refused = client.post("/v1/ai-image-generator", json=BODY)
    assert refused.status_code == 400
    assert "no preview backend runs here" in refused.json()["message"]
    assert api.balance(account) == 10_000


def test_delete_while_rendering_cancels_and_refunds(server_factory: ServerFactory) -> None:
    stuck = Stuck()
    server = server_factory(Backends([stuck]), workers=1, shutdown_grace_seconds=0)
    account = server.account()
    [project_id] = create(server, account)
    assert stuck.entered.wait(10)
    with server.client(account) as client:
        assert client.delete(f"/v1/image-projects/{project_id}").status_code == 204
    assert statuses(server, [project_id])[project_id][0] == "canceled"
    assert server.balance(account) == 10_000
    stuck.release.set()
