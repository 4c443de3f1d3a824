"""Jobs: group commit of creates (one transaction, one outcome each), workers on other
processes, and the API key cache."""

from __future__ import annotations

import time

import httpx
import pytest

from darkroom.core import accounts
from darkroom.core.accounts import Authenticator, Principal
from darkroom.core.catalog import ImageSpec
from darkroom.core.errors import IdempotencyConflict, InsufficientCredits, Unauthorized
from darkroom.core.projects import Project
from tests.conftest import LiveServer, ServerFactory

SPEC = ImageSpec(prompt="x", image_count=1, model="flux-schnell", resolution="1k")


def test_one_batch_gives_each_create_its_own_outcome(server: LiveServer) -> None:
    rich = server.account(tier="pro", credits=100)
    poor = server.account(tier="free", credits=7)
    jobs = server.services.jobs
    who_rich = Principal(rich.key_id, rich.id, "pro")
    who_poor = Principal(poor.key_id, poor.id, "free")
    batch = [
        jobs.prepare(who_poor, SPEC),  # 5 of 7
        jobs.prepare(who_poor, SPEC),  # refused: 2 left
        jobs.prepare(who_rich, SPEC, idempotency_key="k", request_hash="h1"),
        jobs.prepare(who_rich, SPEC, idempotency_key="k", request_hash="h1"),  # same request
        jobs.prepare(who_rich, SPEC, idempotency_key="k", request_hash="h2"),  # other body
        jobs.prepare(who_rich, SPEC),
    ]
    outcomes = jobs.submit_many(batch)
    assert isinstance(outcomes[0], Project)
    assert isinstance(outcomes[1], InsufficientCredits)
    assert outcomes[1].balance == 2
    assert isinstance(outcomes[2], Project)
    assert outcomes[3] == outcomes[2]
    assert isinstance(outcomes[4], IdempotencyConflict)
    assert isinstance(outcomes[5], Project)
    assert server.balance(poor) == 2
    assert server.balance(rich) == 90
    # a later retry with the same key is answered from the database
    [again] = jobs.submit_many(
        [jobs.prepare(who_rich, SPEC, idempotency_key="k", request_hash="h1")]
    )
    assert isinstance(again, Project) and again.id == outcomes[2].id  # type: ignore[union-attr]
    for outcome in (outcomes[0], outcomes[2], outcomes[5]):
        assert server.wait(poor if outcome is outcomes[0] else rich, outcome.id)["status"] == (  # type: ignore[union-attr]
            "complete"
        )


def test_api_only_node_and_a_worker_node_share_the_database(
    server_factory: ServerFactory,
) -> None:
    api = server_factory(workers=0)
    worker = server_factory(workers=1, poll_seconds=0.05)
    account = api.account()
    with api.client(account) as client:
        assert client.get("/readyz").json()["ready"] is True
        ids = [
            client.post(
                "/v1/ai-image-generator", json={"image_count": 1, "style": {"prompt": "p"}}
            ).json()["id"]
            for _ in range(3)
        ]
    for project_id in ids:
        final = api.wait(account, project_id)
        assert final["status"] == "complete"
        assert httpx.get(final["downloads"][0]["url"]).status_code == 200
    assert worker.services.jobs.queue_depth() == 0


def test_key_cache_trusts_a_valid_key_only_for_its_ttl(server: LiveServer) -> None:
    account = server.account()
    db = server.services.db
    cached = Authenticator(db, ttl=0.3)
    uncached = Authenticator(db, ttl=0)
    assert cached(account.key).account_id == account.id
    accounts.revoke_key(db, account.key_id)  # as the operator CLI would, from elsewhere
    assert cached(account.key).account_id == account.id  # still within the ttl
    with pytest.raises(Unauthorized):
        uncached(account.key)
    time.sleep(0.35)
    with pytest.raises(Unauthorized):
        cached(account.key)


def test_key_cache_forget_is_immediate(server: LiveServer) -> None:
    account = server.account()
    cached = Authenticator(server.services.db, ttl=60)
    cached(account.key)
    accounts.revoke_key(server.services.db, account.key_id)
    cached.forget(account.key_id)
    with pytest.raises(Unauthorized):
        cached(account.key)
    with pytest.raises(Unauthorized):
        cached("dk_never-issued")
