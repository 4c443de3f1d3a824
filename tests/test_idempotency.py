"""Idempotency-Key on create: a retry returns the same project and charges once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import Account, LiveServer

BODY = {"image_count": 2, "model": "flux-schnell", "resolution": "1k", "style": {"prompt": "x"}}


def create(server: LiveServer, account: Account, body: dict, key: str | None) -> httpx.Response:  # type: ignore[type-arg]
    headers = {"Idempotency-Key": key} if key else {}
    with server.client(account) as client:
        return client.post("/v1/ai-image-generator", json=body, headers=headers)


def test_retry_with_same_key_returns_same_project_charged_once(
    server: LiveServer, account: Account
) -> None:
    first = create(server, account, BODY, "retry-1")
    again = create(server, account, BODY, "retry-1")
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert server.balance(account) == 10_000 - 10


def test_same_key_with_another_body_is_rejected(server: LiveServer, account: Account) -> None:
    assert create(server, account, BODY, "k").status_code == 200
    other = create(server, account, BODY | {"image_count": 3}, "k")
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json()["message"]
    assert server.balance(account) == 10_000 - 10


def test_without_or_with_new_keys_each_create_charges(server: LiveServer, account: Account) -> None:
    ids = {create(server, account, BODY, key).json()["id"] for key in (None, None, "a", "b")}
    assert len(ids) == 4
    assert server.balance(account) == 10_000 - 40


def test_keys_are_per_account(server: LiveServer, account: Account) -> None:
    other = server.account(name="other")
    mine = create(server, account, BODY, "shared").json()["id"]
    theirs = create(server, other, BODY, "shared").json()["id"]
    assert mine != theirs


def test_concurrent_retries_make_one_project(server: LiveServer, account: Account) -> None:
    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(lambda _: create(server, account, BODY, "race"), range(16)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["id"] for r in responses}) == 1
    assert server.balance(account) == 10_000 - 10


def test_failed_create_does_not_burn_the_key(server: LiveServer) -> None:
    poor = server.account(tier="free", credits=5)
    assert create(server, poor, BODY, "later").status_code == 402
    from darkroom.core import credits

    credits.grant(server.services.db, poor.id, 5)
    assert create(server, poor, BODY, "later").status_code == 200
    assert server.balance(poor) == 0
