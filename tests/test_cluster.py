"""Two live nodes on one database, as a cluster runs them: the rate limit holds for the cluster,
and a key revoked or a tier changed through one node is enforced by the other within the
authentication cache's lifetime (``auth_cache_seconds``)."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from darkroom.store.tables import ledger
from tests.conftest import Account, LiveServer, ServerFactory
from tests.test_admin import admin_client
from tests.waiting import wait_until

BODY = {"image_count": 1, "style": {"prompt": "a lighthouse"}}
GATED = BODY | {"model": "nano-banana-pro"}  # creator tier and above


def ledger_sum(server: LiveServer, account: Account) -> tuple[int, int]:
    """The account's ledger: the sum of its amounts, and its number of charges."""
    query = select(func.sum(ledger.c.amount), func.count().filter(ledger.c.kind == "charge")).where(
        ledger.c.account_id == account.id
    )
    with server.services.db.read() as conn:
        total, charges = conn.execute(query).one()
    return int(total), int(charges)


def test_the_rate_limit_holds_across_nodes(server_factory: ServerFactory) -> None:
    limit = 3  # a token every 20 s: none comes back during the test
    first = server_factory(rate_limit_per_minute=limit)
    second = server_factory(rate_limit_per_minute=limit)  # the same data directory and database
    account = first.account(credits=10_000)
    with first.client(account) as on_first, second.client(account) as on_second:
        created = [
            client.post("/v1/ai-image-generator", json=BODY)
            for client in (on_first, on_second, on_first)
        ]
        assert [r.status_code for r in created] == [200] * limit, [r.text for r in created]
        refused = [
            on_second.post("/v1/ai-image-generator", json=BODY),
            on_first.post("/v1/ai-image-generator", json=BODY),
            # the OpenAI dialect takes from the same bucket
            on_second.post("/v1/images/generations", json={"prompt": "x", "model": "dall-e-2"}),
        ]
    assert [r.status_code for r in refused] == [429, 429, 429]
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    charged = sum(r.json()["credits_charged"] for r in created)
    assert charged > 0
    # nothing was charged for the refused ones: the balance is the ledger's, and the ledger
    # holds the three charges only
    assert first.balance(account) == second.balance(account) == 10_000 - charged
    assert ledger_sum(first, account) == (10_000 - charged, limit)
    # another key has its own bucket
    other = first.account()
    with second.client(other) as client:
        assert client.post("/v1/ai-image-generator", json=BODY).status_code == 200


def test_a_key_revoked_on_one_node_is_refused_by_the_other(server_factory: ServerFactory) -> None:
    first = server_factory()
    second = server_factory()
    assert second.settings.auth_cache_seconds > 0  # the other node remembers keys for a while
    account = first.account()
    keep = first.account()
    with second.client(account) as on_second:
        assert on_second.get("/v1/account").status_code == 200  # remembered as valid there
        with admin_client(first) as admin:
            assert admin.delete(f"/keys/{account.key_id}").status_code == 200
        wait_until(lambda: on_second.get("/v1/account").status_code == 401)
        refused = on_second.post("/v1/ai-image-generator", json=BODY)
    assert refused.status_code == 401
    with second.client(keep) as client:
        assert client.get("/v1/account").status_code == 200  # other keys are unaffected


def test_a_tier_changed_on_one_node_is_enforced_by_the_other(server_factory: ServerFactory) -> None:
    first = server_factory()
    second = server_factory()
    account = first.account(tier="free", credits=10_000)

    def available(client: httpx.Client) -> bool:
        models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
        return "nano-banana-pro" in models

    with second.client(account) as on_second, admin_client(first) as admin:
        assert on_second.post("/v1/ai-image-generator", json=GATED).status_code == 403
        assert admin.patch(f"/accounts/{account.id}", json={"tier": "creator"}).status_code == 200
        wait_until(lambda: available(on_second))
        allowed = on_second.post("/v1/ai-image-generator", json=GATED)
        assert allowed.status_code == 200, allowed.text

        assert admin.patch(f"/accounts/{account.id}", json={"tier": "free"}).status_code == 200
        wait_until(lambda: not available(on_second))
        assert on_second.post("/v1/ai-image-generator", json=GATED).status_code == 403
    assert second.balance(account) == 10_000 - allowed.json()["credits_charged"]
