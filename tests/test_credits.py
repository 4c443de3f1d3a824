"""Credits under concurrency and the ledger's invariants, through real HTTP requests."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import select

from darkroom.core import credits
from darkroom.core.errors import InvalidRequest, NotFound
from darkroom.store.tables import ledger
from tests.conftest import Account, LiveServer, ServerFactory

BODY = {"image_count": 1, "model": "flux-schnell", "resolution": "1k", "style": {"prompt": "x"}}


def ledger_rows(server: LiveServer, account: Account) -> list[tuple[str, int, int, str | None]]:
    with server.services.db.read() as conn:
        rows = conn.execute(
            select(ledger.c.kind, ledger.c.amount, ledger.c.balance_after, ledger.c.project_id)
            .where(ledger.c.account_id == account.id)
            .order_by(ledger.c.id)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def fire(url: str, key: str, count: int, body: dict = BODY) -> list[httpx.Response]:  # type: ignore[type-arg]
    def one(_: int) -> httpx.Response:
        with httpx.Client(timeout=60) as client:
            return client.post(
                f"{url}/v1/ai-image-generator",
                json=body,
                headers={"Authorization": f"Bearer {key}"},
            )

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def test_exactly_k_of_many_concurrent_creates_succeed(server: LiveServer) -> None:
    k = 7
    account = server.account(tier="free", credits=5 * k)
    responses = fire(server.url, account.key, 40)
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == k
    assert statuses.count(402) == 40 - k
    assert server.balance(account) == 0
    charges = [row for row in ledger_rows(server, account) if row[0] == "charge"]
    assert len(charges) == k
    assert sorted(row[2] for row in charges) == [5 * i for i in range(k)]


def test_two_servers_on_one_database_never_overdraw(server_factory: ServerFactory) -> None:
    first = server_factory()
    second = server_factory()  # same data dir, its own engine, loop and workers
    k = 9
    account = first.account(tier="free", credits=5 * k)
    with ThreadPoolExecutor(max_workers=2) as pool:
        a, b = pool.map(lambda s: fire(s.url, account.key, 20), (first, second))
    ok = [r for r in a + b if r.status_code == 200]
    assert len(ok) == k
    assert {r.status_code for r in a + b} == {200, 402}
    assert first.balance(account) == 0


def test_balance_after_matches_running_sum(server: LiveServer) -> None:
    account = server.account(tier="pro", credits=100)
    fire(server.url, account.key, 10)
    credits.grant(server.services.db, account.id, 50, note="top-up")
    running = 0
    for _kind, amount, balance_after, _project in ledger_rows(server, account):
        running += amount
        assert balance_after == running
    assert running == server.balance(account)


def test_grant_validation(server: LiveServer, account: Account) -> None:
    with pytest.raises(InvalidRequest):
        credits.grant(server.services.db, account.id, 0)
    with pytest.raises(NotFound):
        credits.grant(server.services.db, "acct_missing", 5)


def test_refund_happens_exactly_once(server: LiveServer, account: Account) -> None:
    with server.client(account) as client:
        project_id = client.post("/v1/ai-image-generator", json=BODY).json()["id"]
    server.wait(account, project_id)
    db = server.services.db
    with db.write() as conn:
        assert credits.refund_in(conn, account.id, project_id, "first") == 5
    with db.write() as conn:
        assert credits.refund_in(conn, account.id, project_id, "second") == 0
    kinds = [row[0] for row in ledger_rows(server, account) if row[3] == project_id]
    assert kinds == ["charge", "refund"]
    assert server.balance(account) == 10_000
