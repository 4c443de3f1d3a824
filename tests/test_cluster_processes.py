"""One API node and two render workers, each a process with its own data directory, on one
PostgreSQL database (and, on S3 runs, one bucket: no disk shared): workers killed with
``kill -9`` mid-render and restarted lose nothing: no job, no credit, no image, and leave no
orphan object. And a synchronous OpenAI-dialect request whose node dies is not charged.

These run on the PostgreSQL run of the suite (``DARKROOM_TEST_DATABASE=postgres``), the database
a cluster runs on."""

from __future__ import annotations

import hashlib
import re
import threading
from collections import Counter
from pathlib import Path

import httpx
import openai
import pytest
from sqlalchemy import func, select

from darkroom.storage.files import ProjectFiles
from darkroom.storage.location import open_store
from darkroom.store.tables import accounts, ledger, projects
from tests.cluster import Cluster, cluster
from tests.conftest import ON_POSTGRES, Databases
from tests.waiting import wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not ON_POSTGRES, reason="a cluster runs on PostgreSQL (the postgres run)"),
]

SMALL = {"image_count": 1, "model": "flux-schnell", "resolution": "640px"}
BIG = {"image_count": 2, "model": "seedream-v4", "resolution": "4k"}  # ~1.5 s to render here
LEASE = 3.0


def rendering_by(running: Cluster, node_id: str) -> list[str]:
    with running.engine.connect() as conn:
        query = select(projects.c.id).where(
            projects.c.status == "rendering", projects.c.lease_owner == node_id
        )
        return list(conn.execute(query).scalars())


def storage(databases: Databases, url: str) -> dict[str, str]:
    """On S3 runs the nodes share only the database and a bucket (a prefix of the session's);
    otherwise they share a directory (tests/cluster.py's default)."""
    bucket = databases.storage_url(url)
    return {"storage_url": bucket} if bucket else {}


def statuses(running: Cluster, ids: list[str]) -> Counter[str]:
    with running.engine.connect() as conn:
        query = select(projects.c.status).where(projects.c.id.in_(ids))
        return Counter(conn.execute(query).scalars())


def test_killed_workers_lose_no_job_credit_or_image(tmp_path: Path, databases: Databases) -> None:
    url = databases.url(tmp_path / "cluster")
    settings = {"lease_seconds": LEASE, "max_attempts": 5, "queue_max_per_account": 0}
    with cluster(tmp_path, url, **settings, **storage(databases, url)) as running:
        _api, api_url = running.api()
        first = running.worker("worker-a", "--concurrency", "2")
        running.worker("worker-b", "--concurrency", "2")
        key = running.account(api_url, credits=1_000_000)
        headers = {"Authorization": f"Bearer {key}"}
        ids: list[str] = []
        counts: dict[str, int] = {}
        with httpx.Client(base_url=api_url, headers=headers, timeout=30) as http:
            for n in range(200):
                body = {**(BIG if n % 10 == 0 else SMALL), "style": {"prompt": f"p{n}"}}
                made = http.post("/v1/ai-image-generator", json=body)
                assert made.status_code == 200, made.text
                ids.append(made.json()["id"])
                counts[ids[-1]] = body["image_count"]  # type: ignore[assignment]

            # kill -9 the first worker while it renders; its jobs go to the other within the lease.
            node_a = running.node_of(first)
            assert node_a is not None
            held = wait_until(
                lambda: rendering_by(running, node_a), "worker-a to render", timeout=60
            )
            first.kill()
            for project_id in held:
                wait_until(
                    lambda pid=project_id: (
                        http.get(f"/v1/image-projects/{pid}").json()["status"] != "rendering"
                        or rendering_by(running, node_a) == []
                    ),
                    f"{project_id} to leave the dead worker",
                    timeout=LEASE * 4,
                )
            assert rendering_by(running, node_a) == []

            # Restart it while the other is busy.
            running.worker("worker-a2", "--concurrency", "2")
            wait_until(
                lambda: statuses(running, ids) == Counter({"complete": len(ids)}),
                "every project to complete",
                timeout=240,
            )

            # Every file is there, as its digest says, whichever node wrote it.
            for project_id in ids:
                body = http.get(f"/v1/image-projects/{project_id}").json()
                assert body["status"] == "complete"
                assert len(body["downloads"]) == counts[project_id]
                for item in body["downloads"]:
                    data = httpx.get(item["url"], timeout=30).content
                    assert hashlib.sha256(data).hexdigest() == item["sha256"]
                    assert len(data) == item["bytes"]

            # What killed workers had stored of their attempts is gone: no orphan is left.
            files = ProjectFiles(open_store(running.storage_url, tmp_path / "unused"))
            wait_until(
                lambda: all(len(files.keys(pid)) == counts[pid] for pid in ids),
                "the cut-off attempts' objects to be removed",
                timeout=30,
            )

        # Charged once each, never refunded; the balance is its ledger.
        with running.engine.connect() as conn:
            kinds = Counter(
                conn.execute(select(ledger.c.kind).where(ledger.c.project_id.in_(ids))).scalars()
            )
            assert kinds == Counter({"charge": len(ids)})
            for account_id, balance in conn.execute(select(accounts.c.id, accounts.c.balance)):
                total = conn.execute(
                    select(func.sum(ledger.c.amount)).where(ledger.c.account_id == account_id)
                ).scalar_one()
                assert balance == total
        # Each project was completed by exactly one lease holder.
        completed = Counter(re.findall(r"project (img_\w+) complete in", running.logs("worker")))
        assert set(completed) == set(ids)
        assert set(completed.values()) == {1}
        assert held and all(p in completed for p in held)


def test_a_sync_answer_whose_node_died_is_not_charged(tmp_path: Path, databases: Databases) -> None:
    """kill -9 of the API node while an OpenAI-dialect request waits: the project is canceled
    and refunded (its waiter is gone), in whichever order a worker and the nodes' sweeps come to
    it (a worker may complete it before any node has noticed that its waiter is gone: it is
    refunded then, and its images removed); the client's retry is charged once."""
    url = databases.url(tmp_path / "cluster")
    with cluster(tmp_path, url, lease_seconds=LEASE, **storage(databases, url)) as running:
        api, api_url = running.api("api-1")
        key = running.account(api_url, credits=1_000)
        client = openai.OpenAI(api_key=key, base_url=f"{api_url}/v1", max_retries=0)
        failed: list[BaseException] = []

        def call() -> None:
            try:
                client.images.generate(prompt="a lighthouse", size="256x256")
            except BaseException as exc:
                failed.append(exc)

        waiting = threading.Thread(target=call)
        waiting.start()  # no worker runs yet: the request waits with its project queued
        with running.engine.connect() as conn:
            awaited = wait_until(
                lambda: conn.execute(
                    select(projects.c.id, projects.c.awaited_by).where(
                        projects.c.status == "queued"
                    )
                ).first(),
                "the project to be queued",
                timeout=30,
            )
            conn.rollback()
        api.kill()
        waiting.join(30)
        assert failed and isinstance(failed[0], openai.APIConnectionError)

        _api2, api2_url = running.api("api-2")  # any node sweeps: the waiter's node is gone
        running.worker("worker")  # and may render it first: it is refunded all the same

        def state() -> tuple[str, int]:
            with running.engine.connect() as conn:
                row = conn.execute(
                    select(projects.c.status, projects.c.credits_charged).where(
                        projects.c.id == awaited.id
                    )
                ).one()
            return (row.status, row.credits_charged)

        wait_until(lambda: state() == ("canceled", 0), "the project refunded", timeout=LEASE * 10)
        files = ProjectFiles(open_store(running.storage_url, tmp_path / "unused"))
        assert files.keys(awaited.id) == []  # whatever a worker stored of it is gone

        retry = openai.OpenAI(api_key=key, base_url=f"{api2_url}/v1", max_retries=0)
        image = retry.images.generate(prompt="a lighthouse", size="256x256")
        assert image.data and image.data[0].url
        with running.engine.connect() as conn:
            owner = select(projects.c.account_id).where(projects.c.id == awaited.id)
            balance = conn.execute(
                select(accounts.c.balance).where(accounts.c.id == owner.scalar_subquery())
            ).scalar_one()
            refunds = conn.execute(
                select(func.count()).where(
                    ledger.c.project_id == awaited.id, ledger.c.kind == "refund"
                )
            ).scalar_one()
        assert refunds == 1
        assert balance == 1_000 - 5  # the retry, once


def test_sigterm_hands_the_jobs_in_hand_back(tmp_path: Path, databases: Databases) -> None:
    """A worker told to stop with no grace left gives its jobs back at once; another worker
    renders them, and the stopped one exits cleanly."""
    url = databases.url(tmp_path / "cluster")
    with cluster(tmp_path, url, lease_seconds=30, **storage(databases, url)) as running:
        _api, api_url = running.api()
        draining = running.worker("worker-a", "--concurrency", "1", "--grace", "0")
        node_a = running.node_of(draining)
        assert node_a is not None
        key = running.account(api_url, credits=10_000)
        with httpx.Client(
            base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as http:
            made = http.post(
                "/v1/ai-image-generator", json={**BIG, "image_count": 4, "style": {"prompt": "x"}}
            )
            project_id = made.json()["id"]
            wait_until(
                lambda: rendering_by(running, node_a) == [project_id], "the render", timeout=30
            )
            assert draining.terminate() == 0
            with running.engine.connect() as conn:
                row = conn.execute(
                    select(projects.c.status, projects.c.attempts, projects.c.lease_owner).where(
                        projects.c.id == project_id
                    )
                ).one()
            assert (row.status, row.attempts, row.lease_owner) == ("queued", 1, None)
            running.worker("worker-b")  # long before the 30 s lease could have passed
            final = http.get(f"/v1/image-projects/{project_id}?wait=60").json()
        assert final["status"] == "complete"
        assert len(final["downloads"]) == 4
        assert "handed back" in running.logs("worker-a")
