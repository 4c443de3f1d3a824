"""Senders sharing one database: a delivery is leased to one sender (by its ``owner`` id) at a
time, and the outcome of an attempt moves the delivery only while its sender still holds the
lease (fencing), so a sender that stalled past its lease cannot overwrite the one that took over."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import update

from darkroom.core import accounts
from darkroom.core.ids import new_id
from darkroom.store import clock
from darkroom.store import webhooks as sql
from darkroom.store.database import Database, utcnow
from darkroom.store.tables import webhook_deliveries
from darkroom.worker.webhook_sender import Policy, WebhookSender
from tests.conftest import ServerFactory
from tests.test_webhooks import create
from tests.waiting import wait_until
from tests.webhook_receiver import Receiver

SECRET = "whsec_test"


def pending(db: Database, url: str, count: int) -> list[str]:
    """``count`` deliveries due now to one endpoint at ``url``; their ids."""
    account_id, _ = accounts.create_account(
        db, name="t", tier="free", credits_amount=0, known_tiers=["free"]
    )
    endpoint_id = new_id("wh")
    now = utcnow()
    rows = [
        {
            "id": new_id("msg"),
            "endpoint_id": endpoint_id,
            "account_id": account_id,
            "event": "image.completed",
            "project_id": f"img_{n}",
            "body": f'{{"type":"image.completed","payload":{{"id":"img_{n}"}}}}',
            "status": sql.PENDING,
            "attempts": 0,
        }
        for n in range(count)
    ]

    def write(conn: Any) -> None:
        sql.insert_endpoint(
            conn,
            id=endpoint_id,
            account_id=account_id,
            url=url,
            events='["image.completed"]',
            secret=SECRET,
            created_at=now,
        )
        sql.insert_deliveries(conn, rows)

    db.transact(write)
    return [row["id"] for row in rows]


def lease(db: Database, delivery_id: str, owner: str, seconds: float) -> bool:
    return db.transact(lambda conn: sql.lease(conn, delivery_id, owner, seconds))


def lapse(db: Database, delivery_id: str) -> None:
    """As if its sender stalled past its lease (by the database's clock)."""
    db.transact(
        lambda conn: conn.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.id == delivery_id)
            .values(lease_until=clock.now(conn, -1))
        )
    )


def record(db: Database, delivery_id: str, owner: str, code: int) -> bool:
    attempt = {"attempted_at": utcnow(), "status_code": code, "error": None, "duration_ms": 5}
    outcome = {"status": sql.DELIVERED, "delivered_at": utcnow(), "last_status_code": code}
    return db.transact(lambda conn: sql.record_attempt(conn, delivery_id, owner, attempt, outcome))


def row(db: Database, delivery_id: str) -> Any:
    return db.query(lambda conn: sql.get_delivery(conn, delivery_id))


def test_a_held_lease_is_not_taken_and_a_lost_one_cannot_record(db: Database) -> None:
    (delivery_id,) = pending(db, "http://127.0.0.1:9/hooks", 1)
    assert lease(db, delivery_id, "node_a", 40)
    assert not lease(db, delivery_id, "node_b", 40)  # a holds it
    assert row(db, delivery_id).lease_owner == "node_a"

    # a stalls past its lease; b takes the delivery over, and sends it.
    lapse(db, delivery_id)
    assert lease(db, delivery_id, "node_b", 40)
    assert row(db, delivery_id).lease_owner == "node_b"
    assert not record(db, delivery_id, "node_a", 500)  # fenced: no longer a's to record
    taken_over = row(db, delivery_id)
    assert (taken_over.status, taken_over.attempts) == (sql.PENDING, 0)
    assert taken_over.lease_owner == "node_b"

    assert record(db, delivery_id, "node_b", 204)
    done = row(db, delivery_id)
    assert (done.status, done.attempts, done.last_status_code) == (sql.DELIVERED, 1, 204)
    assert done.lease_owner is None and done.lease_until is None
    history = db.query(lambda conn: sql.attempts_of(conn, [delivery_id]))
    assert [a.status_code for a in history] == [500, 204]  # both attempts happened


def test_release_frees_only_the_senders_own_leases(db: Database) -> None:
    mine, theirs = pending(db, "http://127.0.0.1:9/hooks", 2)
    assert lease(db, mine, "node_a", 40)
    assert lease(db, theirs, "node_b", 40)
    db.transact(lambda conn: sql.release(conn, "node_a"))
    assert row(db, mine).lease_owner is None and row(db, mine).lease_until is None
    assert row(db, theirs).lease_owner == "node_b"
    due = db.query(lambda conn: sql.due_ids(conn, 10))
    assert due == [mine]


def test_two_senders_on_one_database_send_each_delivery_once(db: Database) -> None:
    receiver = Receiver(secret=SECRET)
    try:
        ids = pending(db, receiver.url, 30)
        policy = Policy(poll=0.05, allow_private=True, concurrency=4)
        senders = [WebhookSender(db, policy), WebhookSender(db, policy)]
        assert senders[0].owner != senders[1].owner
        assert len(senders[0].owner) <= 40

        async def run() -> None:
            for sender in senders:
                await sender.start()
            deadline = time.monotonic() + 30
            try:
                while not all(row(db, i).status == sql.DELIVERED for i in ids):
                    assert time.monotonic() < deadline, "deliveries still pending"
                    await asyncio.sleep(0.05)
            finally:
                for sender in senders:
                    await sender.stop()

        asyncio.run(run())
    finally:
        receiver.close()
    sent = Counter(r.webhook_id for r in receiver.received)
    assert sorted(sent) == sorted(ids)
    assert set(sent.values()) == {1}  # no delivery was sent by both senders
    assert all(r.signature_ok for r in receiver.received)
    assert {row(db, i).attempts for i in ids} == {1}


def test_the_take_goes_round_the_accounts_and_caps_endpoints_over_all_senders(
    db: Database,
) -> None:
    """``due_ids`` as every sender calls it: another account's one delivery comes before the
    backlog of the first; an endpoint gets no more than its share in flight, counting the
    leases other senders hold; an account at its share here gets none; a disabled endpoint
    none."""
    backlog = pending(db, "http://127.0.0.1:9/a", 30)  # one account's, due first
    (late,) = pending(db, "http://127.0.0.1:9/b", 1)  # another account's, written after
    busy = row(db, backlog[0]).account_id

    def take(**caps: Any) -> list[str]:
        return db.query(lambda conn: sql.due_ids(conn, 8, **caps))

    assert len(take()) == 8  # no caps: the backlog fills the take...
    due = take(per_endpoint=2, per_account=4)
    assert late in due[:2] and len(due) == 3  # ...caps: round the accounts, 2 per endpoint
    assert lease(db, backlog[0], "node_b", 40)  # another sender sends one
    due = take(per_endpoint=2, per_account=4)
    assert late in due and len(due) == 2  # so one more of the backlog's endpoint, not two
    assert take(per_endpoint=2, per_account=4, held={busy: 4}) == [late]
    assert take(per_endpoint=2, per_account=4, held={busy: 3}) != [late]
    endpoint = row(db, late).endpoint_id
    db.transact(lambda conn: sql.set_disabled(conn, endpoint, utcnow()))
    assert late not in take(per_endpoint=2, per_account=4)


NOISY_ENDPOINTS = 20  # the most an account may have
# How long the test waits for another account's first delivery (then fails): less than the send
# timeout (30 s) that would free a slot held by the noisy account.
WAIT = 20.0


def test_a_noisy_account_does_not_delay_another_accounts_first_delivery(
    server_factory: ServerFactory,
) -> None:
    """One account's 20 endpoints hang (they answer only when the test ends) with 120 deliveries
    queued for them; another account's first delivery still leaves while they hang: each
    endpoint has at most 2 sends in flight and each account at most half of the
    sender's 8 slots, and the take goes round the accounts. (Before: all 8 slots hung on the
    noisy account, and the other delivery waited its turn behind the 120.)"""
    hanging = Receiver(slow_first=10**6, delay=120)
    quick = Receiver()
    try:
        # The default 8 slots; a timeout longer than the test, so no send is abandoned mid-test.
        server = server_factory(webhook_timeout_seconds=30)
        noisy, other = server.account(), server.account()
        with server.client(noisy) as client:
            for n in range(NOISY_ENDPOINTS):
                response = client.post("/v1/webhooks", json={"url": f"{hanging.url}/{n}"})
                assert response.status_code == 201, response.text
        for project_id in [create(server, noisy) for _ in range(3)]:  # 2 events to each of 20
            assert server.wait(noisy, project_id)["status"] == "complete"
        # The noisy account holds every send slot it may, and has many more deliveries due.
        wait_until(lambda: hanging.in_flight >= 4, "the noisy endpoints to be sent to")

        with server.client(other) as client:
            response = client.post("/v1/webhooks", json={"url": quick.url})
        assert response.status_code == 201, response.text
        quick.secret, other_hook = response.json()["secret"], response.json()["id"]
        create(server, other)
        # It arrives while the noisy sends still hang: had they held every slot, it would wait
        # for one of them to time out (30 s), past this wait.
        wait_until(
            quick.accepted,
            lambda: (
                f"the other account's first delivery; the noisy endpoints hold "
                f"{hanging.in_flight} sends"
            ),
            timeout=WAIT,
            interval=0.01,
        )
        assert hanging.in_flight >= 4
        first = quick.accepted()[0]
        with server.client(other) as client:
            listed = client.get(f"/v1/webhooks/{other_hook}/deliveries").json()["data"]
        written = {d["id"]: datetime.fromisoformat(d["created_at"]) for d in listed}
        lateness = first.at - written[first.webhook_id].timestamp()
        print(f"\nother account's first delivery: {lateness * 1000:.0f} ms after its event")
        assert first.signature_ok
        # The caps held: at most 2 sends per endpoint, at most 4 of the 8 for the account.
        assert max(hanging.peak.values()) <= 2, hanging.peak
        assert hanging.peak_total <= 4
    finally:
        hanging.close()
        quick.close()
