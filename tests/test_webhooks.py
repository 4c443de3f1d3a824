"""Webhooks end to end: endpoints registered through the API, signed deliveries to a real
receiver on loopback that refuses the first attempts, retries, a restart in the middle, re-sends,
and the address policy (checked after DNS resolution, at registration and at every send)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from darkroom import Client, WebhookVerificationError, verify_webhook
from darkroom.engine.registry import Backends
from tests.backends import Failing, Slow, Stuck
from tests.conftest import ON_POSTGRES, Account, LiveServer, ServerFactory
from tests.waiting import wait_until
from tests.webhook_receiver import Receiver

FAST = {"webhook_retry_seconds": 0.1, "webhook_retry_max_seconds": 0.4}
BODY = {"image_count": 1, "style": {"prompt": "a lighthouse"}}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.close()


def register(server: LiveServer, account: Account, receiver: Receiver, **body: Any) -> str:
    with server.client(account) as client:
        response = client.post("/v1/webhooks", json={"url": receiver.url, **body})
    assert response.status_code == 201, response.text
    receiver.secret = response.json()["secret"]
    webhook_id: str = response.json()["id"]
    return webhook_id


def create(server: LiveServer, account: Account) -> str:
    with server.client(account) as client:
        response = client.post("/v1/ai-image-generator", json=BODY)
    assert response.status_code == 200, response.text
    project_id: str = response.json()["id"]
    return project_id


def deliveries(server: LiveServer, account: Account, webhook_id: str) -> list[dict[str, Any]]:
    with server.client(account) as client:
        response = client.get(f"/v1/webhooks/{webhook_id}/deliveries")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["data"]
    return found


def settled(server: LiveServer, account: Account, webhook_id: str) -> list[dict[str, Any]]:
    """The endpoint's deliveries, once none is pending any more (what it was sent is final)."""
    return wait_until(
        lambda: (
            (found := deliveries(server, account, webhook_id))
            and all(d["status"] in ("delivered", "failed") for d in found)
            and found
        ),
        "every delivery delivered or failed",
    )


def test_endpoints_crud_and_validation(server: LiveServer, receiver: Receiver) -> None:
    account = server.account()
    other = server.account()
    with server.client(account) as client:
        created = client.post("/v1/webhooks", json={"url": receiver.url})
        assert created.status_code == 201
        hook = created.json()
        assert hook["secret"].startswith("whsec_") and len(hook["secret"]) > 40
        assert hook["events"] == [
            "image.started",
            "image.completed",
            "image.errored",
            "image.canceled",
        ]
        only = client.post(
            "/v1/webhooks", json={"url": receiver.url, "events": ["image.completed"]}
        )
        assert only.json()["events"] == ["image.completed"]
        listed = client.get("/v1/webhooks").json()["data"]
        assert [h["id"] for h in listed] == [hook["id"], only.json()["id"]]
        assert all("secret" not in h for h in listed)  # shown once, at creation
        for bad, words in [
            ({"url": "ftp://example.com/x"}, "only http and https"),
            ({"url": "not a url"}, "webhook url"),
            ({"url": "http://user:pw@example.com/"}, "user name or password"),
            ({"url": receiver.url, "events": ["image.finished"]}, "unknown event"),
            ({"url": receiver.url, "events": []}, "at least one event"),
            ({}, "url"),
        ]:
            response = client.post("/v1/webhooks", json=bad)
            assert response.status_code == 400, (bad, response.text)
            assert words in response.json()["message"], response.json()
        assert client.delete(f"/v1/webhooks/{hook['id']}").status_code == 204
        assert [h["id"] for h in client.get("/v1/webhooks").json()["data"]] == [only.json()["id"]]
        assert client.delete(f"/v1/webhooks/{hook['id']}").status_code == 404
    with server.client(other) as client:  # another account's endpoint does not exist for it
        assert client.get(f"/v1/webhooks/{only.json()['id']}/deliveries").status_code == 404
        assert client.delete(f"/v1/webhooks/{only.json()['id']}").status_code == 404
        assert client.get("/v1/webhooks").json()["data"] == []
    with server.client() as client:
        assert client.get("/v1/webhooks").status_code == 401


def test_private_addresses_refused_after_resolution(server_factory: ServerFactory) -> None:
    server = server_factory(webhooks_allow_private=False)
    account = server.account()
    with server.client(account) as client:
        for url, why in [
            ("http://127.0.0.1:9/hook", "loopback"),
            ("http://localhost:9/hook", "loopback"),  # a name: refused for what it resolves to
            ("http://10.1.2.3/hook", "private"),
            ("http://192.168.0.10/hook", "private"),
            ("http://169.254.169.254/latest/meta-data", "link-local"),
            ("http://[::1]:9/hook", "loopback"),
            ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ]:
            response = client.post("/v1/webhooks", json={"url": url})
            assert response.status_code == 400, (url, response.text)
            assert why in response.json()["message"], (url, response.json())
        assert client.get("/v1/webhooks").json()["data"] == []


def test_signed_events_retried_until_accepted_once_per_project(
    server_factory: ServerFactory, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    server = server_factory(**FAST)
    account = server.account()
    webhook_id = register(server, account, receiver)
    projects = [create(server, account) for _ in range(3)]
    for project_id in projects:
        assert server.wait(account, project_id)["status"] == "complete"
    receiver.wait_for(3, "image.completed")
    receiver.wait_for(3, "image.started")
    time.sleep(0.5)  # nothing more arrives
    accepted = receiver.accepted()
    assert all(r.signature_ok for r in receiver.received)
    completed = Counter(
        r.event["payload"]["id"] for r in accepted if r.event["type"] == "image.completed"
    )
    assert completed == Counter(projects)  # exactly one accepted completed event per project
    # Each delivery was tried 3 times under one webhook-id, and each accepted once.
    attempts = Counter(r.webhook_id for r in receiver.received)
    assert set(attempts.values()) == {3}
    assert len({r.webhook_id for r in accepted}) == len(accepted) == 6
    # The payload is the GET project object, download links included.
    event = next(r.event for r in accepted if r.event["type"] == "image.completed")
    with server.client(account) as client:
        current = client.get(f"/v1/image-projects/{event['payload']['id']}").json()
    assert event["payload"]["status"] == "complete"
    assert {k: v for k, v in event["payload"].items() if k != "downloads"} == {
        k: v for k, v in current.items() if k != "downloads"
    }
    assert len(event["payload"]["downloads"]) == 1
    # darkroom's own verifier accepts the genuine bytes and refuses tampered or stale ones.
    genuine = next(r for r in accepted)
    headers = {
        "magic-hour-event-timestamp": str(genuine.timestamp),
        "magic-hour-event-signature": genuine.signature,
    }
    assert verify_webhook(receiver.secret, genuine.body, headers)["type"] in (
        "image.started",
        "image.completed",
    )
    with pytest.raises(WebhookVerificationError):
        verify_webhook(receiver.secret, genuine.body.replace(b"complete", b"error"), headers)
    with pytest.raises(WebhookVerificationError):
        verify_webhook("whsec_other", genuine.body, headers)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(receiver.secret, genuine.body, headers, now=genuine.timestamp + 3600)
    # The deliveries are listed with their attempts.
    listed = deliveries(server, account, webhook_id)
    assert len(listed) == 6
    for delivery in listed:
        assert delivery["status"] == "delivered"
        assert delivery["attempts"] == 3
        assert [a["status_code"] for a in delivery["history"]] == [500, 500, 204]
        assert delivery["history"][0]["error"] == "HTTP 500"
        assert delivery["last_error"] is None and delivery["delivered_at"] is not None


def test_errored_and_canceled_events_and_event_filter(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    everything, completed_only = Receiver(), Receiver()
    try:
        slow = Slow(delay=30)
        server = server_factory(Backends([slow]), workers=1, **FAST)
        account = server.account()
        hooks = [
            register(server, account, everything),
            register(server, account, completed_only, events=["image.completed"]),
        ]
        first = create(server, account)
        assert slow.entered.wait(10)
        queued = create(server, account)
        with server.client(account) as client:
            assert client.post(f"/v1/image-projects/{queued}/cancel").status_code == 200
        slow.release.set()
        assert server.wait(account, first)["status"] == "complete"
        everything.wait_for(1, "image.canceled")
        everything.wait_for(1, "image.completed")
        completed_only.wait_for(1, "image.completed")
        for webhook_id in hooks:  # what each was sent is final
            settled(server, account, webhook_id)
        canceled = everything.accepted("image.canceled")[0].event["payload"]
        assert canceled["id"] == queued and canceled["status"] == "canceled"
        assert canceled["credits_charged"] == 0
        assert [r.event["type"] for r in completed_only.received] == ["image.completed"]
        server.stop()

        failing = server_factory(Backends([Failing()]), data_dir=tmp_path / "other", **FAST)
        account = failing.account()
        register(failing, account, everything, events=["image.errored"])
        errored = create(failing, account)
        assert failing.wait(account, errored)["status"] == "error"
        everything.wait_for(1, "image.errored")
        payload = everything.accepted("image.errored")[0].event["payload"]
        assert payload["id"] == errored
        assert payload["error"] == {"code": "gpu_on_fire", "message": "the GPU is on fire"}
    finally:
        everything.close()
        completed_only.close()


def test_delivery_survives_a_restart(
    server_factory: ServerFactory, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.accepting = False
    data = tmp_path / "data"
    first = server_factory(data_dir=data, webhook_retry_seconds=0.3)
    account = first.account()
    webhook_id = register(first, account, receiver, events=["image.completed"])
    project_id = create(first, account)
    assert first.wait(account, project_id)["status"] == "complete"
    wait_until(lambda: len(receiver.received) >= 2)  # refused, and retried
    first.stop()
    refused = {r.webhook_id for r in receiver.received}
    assert len(refused) == 1

    receiver.accepting = True
    second = server_factory(data_dir=data, webhook_retry_seconds=0.3)
    receiver.wait_for(1, "image.completed")
    (delivery,) = settled(second, account, webhook_id)
    accepted = receiver.accepted()
    assert len(accepted) == 1  # exactly once, after the restart
    assert accepted[0].webhook_id in refused  # the same delivery, not a new one
    assert accepted[0].event["payload"]["id"] == project_id
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == len(receiver.received)


def test_gives_up_after_max_age_then_resend(
    server_factory: ServerFactory, receiver: Receiver
) -> None:
    receiver.accepting = False
    server = server_factory(**FAST, webhook_max_age_seconds=0.6)
    account = server.account()
    webhook_id = register(server, account, receiver, events=["image.completed"])
    project_id = create(server, account)
    assert server.wait(account, project_id)["status"] == "complete"
    wait_until(lambda: deliveries(server, account, webhook_id)[0]["status"] == "failed")
    (failed,) = deliveries(server, account, webhook_id)
    assert failed["attempts"] >= 2
    assert failed["last_status_code"] == 500 and failed["next_attempt_at"] is None
    tries = len(receiver.received)
    time.sleep(0.5)
    assert len(receiver.received) == tries  # given up: no more attempts

    receiver.accepting = True
    with Client(token=account.key, base_url=server.url) as client:
        resent = client.v1.webhooks.resend(id=webhook_id, delivery_id=failed["id"])
        assert resent.status == "pending"
        receiver.wait_for(1)
        # The receiver has the request before the sender has recorded its answer.
        wait_until(
            lambda: client.v1.webhooks.deliveries(id=webhook_id).data[0].status == "delivered"
        )
        (delivery,) = client.v1.webhooks.deliveries(id=webhook_id).data
    assert delivery.status == "delivered" and delivery.attempts == tries + 1
    assert receiver.accepted()[0].webhook_id == failed["id"]
    with server.client(account) as client:
        missing = client.post(f"/v1/webhooks/{webhook_id}/deliveries/msg_nope/resend")
        assert missing.status_code == 404


def test_slow_receiver_times_out_and_is_retried(
    server_factory: ServerFactory, receiver: Receiver
) -> None:
    receiver.slow_first, receiver.delay = 1, 1.5
    server = server_factory(**FAST, webhook_timeout_seconds=0.3)
    account = server.account()
    webhook_id = register(server, account, receiver, events=["image.completed"])
    project_id = create(server, account)
    assert server.wait(account, project_id)["status"] == "complete"
    wait_until(lambda: deliveries(server, account, webhook_id)[0]["status"] == "delivered")
    (delivery,) = deliveries(server, account, webhook_id)
    assert delivery["history"][0]["status_code"] is None
    assert delivery["history"][0]["error"] == "no answer within 0.3 s"
    assert delivery["history"][0]["duration_ms"] >= 250  # waited for the timeout, and said so
    assert delivery["history"][-1]["status_code"] == 204


def test_send_time_policy_and_deleted_endpoint(
    server_factory: ServerFactory, receiver: Receiver, tmp_path: Path
) -> None:
    """An endpoint registered while private addresses were allowed is not sent to once the
    operator forbids them; deleting an endpoint cancels what it had still to receive."""
    data = tmp_path / "data"
    first = server_factory(data_dir=data)
    account = first.account()
    webhook_id = register(first, account, receiver, events=["image.completed"])
    first.stop()
    strict = server_factory(data_dir=data, webhooks_allow_private=False, **FAST)
    project_id = create(strict, account)
    assert strict.wait(account, project_id)["status"] == "complete"
    wait_until(lambda: deliveries(strict, account, webhook_id)[0]["attempts"] >= 2)
    (delivery,) = deliveries(strict, account, webhook_id)
    assert "loopback" in delivery["last_error"]
    assert receiver.received == []  # never reached
    with strict.client(account) as client:
        assert client.delete(f"/v1/webhooks/{webhook_id}").status_code == 204
    with strict.services.db.read() as conn:
        from darkroom.store import webhooks as sql

        row = sql.get_delivery(conn, delivery["id"])
    assert row is not None and row.status == "canceled"


def test_sdk_webhooks(server: LiveServer, receiver: Receiver) -> None:
    account = server.account()
    with Client(token=account.key, base_url=server.url) as client:
        hook = client.v1.webhooks.create(url=receiver.url, events=["image.completed"])
        assert hook.secret and hook.events == ["image.completed"]
        receiver.secret = hook.secret
        assert [h.id for h in client.v1.webhooks.list().data] == [hook.id]
        result = client.v1.ai_image_generator.generate(**BODY, download_outputs=False)  # type: ignore[arg-type]
        receiver.wait_for(1, "image.completed")
        assert receiver.accepted()[0].event["payload"]["id"] == result.id
        client.v1.webhooks.delete(id=hook.id)
        assert client.v1.webhooks.list().data == []


def test_cli_webhooks(server: LiveServer, receiver: Receiver) -> None:
    import json
    import os
    import subprocess
    import sys

    account = server.account()
    env = {**os.environ, "DARKROOM_API_KEY": account.key, "DARKROOM_BASE_URL": server.url}

    def darkroom(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "darkroom.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    created = darkroom("webhooks", "create", receiver.url, "--event", "image.completed")
    assert created.returncode == 0, created.stderr
    assert "whsec_" in created.stdout and "shown only once" in created.stdout
    listed = json.loads(darkroom("webhooks", "list", "--json").stdout)["data"]
    webhook_id = listed[0]["id"]
    receiver.secret = created.stdout.split("secret")[1].split()[0]
    project_id = create(server, account)
    receiver.wait_for(1, "image.completed")
    wait_until(lambda: deliveries(server, account, webhook_id)[0]["status"] == "delivered")
    shown = darkroom("webhooks", "deliveries", webhook_id)
    assert shown.returncode == 0, shown.stderr
    assert "image.completed" in shown.stdout and project_id in shown.stdout
    assert "delivered" in shown.stdout
    assert receiver.accepted()[0].signature_ok
    assert darkroom("webhooks", "delete", webhook_id).returncode == 0
    assert darkroom("webhooks", "delete", webhook_id).returncode == 7  # 404
    bad = darkroom("webhooks", "create", "ftp://example.com/")
    assert bad.returncode == 10 and "only http and https" in bad.stderr


def test_a_render_restarted_after_a_crash_reports_each_event_once(
    server_factory: ServerFactory, receiver: Receiver, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    stuck = Stuck()
    first = server_factory(Backends([stuck]), data_dir=data, shutdown_grace_seconds=0, **FAST)
    account = first.account()
    webhook_id = register(first, account, receiver)
    project_id = create(first, account)
    assert stuck.entered.wait(10)
    receiver.wait_for(1, "image.started")
    first.stop()  # the render is cut off: the project stays rendering
    stuck.release.set()
    second = server_factory(data_dir=data, **FAST)  # re-runs it from the start
    assert second.wait(account, project_id)["status"] == "complete"
    receiver.wait_for(1, "image.completed")
    settled(second, account, webhook_id)  # what it was sent is final
    events = Counter(r.event["type"] for r in receiver.accepted())
    assert events == {"image.started": 1, "image.completed": 1}


def test_a_delivery_written_on_an_api_node_is_sent_by_the_worker_node(
    server_factory: ServerFactory, receiver: Receiver, tmp_path: Path
) -> None:
    """A project canceled on an API-only node writes its image.canceled delivery there; the
    sender runs on the node with workers, woken by the signal (PostgreSQL: NOTIFY; here the
    worker would otherwise look only every 30 s) or, on SQLite, at its next look."""
    poll = 30.0 if ON_POSTGRES else 0.2
    stuck = Stuck()
    data = tmp_path / "data"
    worker = server_factory(Backends([stuck]), data_dir=data, poll_seconds=poll)
    api = server_factory(
        data_dir=tmp_path / "api",
        database_url=worker.settings.sqlalchemy_url,
        workers=0,
        poll_seconds=poll,
    )
    account = worker.account()
    register(api, account, receiver, events=["image.canceled"])
    project_id = create(api, account)
    assert stuck.entered.wait(10)
    with api.client(account) as client:
        assert client.post(f"/v1/image-projects/{project_id}/cancel").status_code == 200
    stuck.release.set()
    receiver.wait_for(1, "image.canceled", timeout=10)
    assert receiver.accepted()[0].event["payload"]["id"] == project_id


def test_the_sdk_knows_the_events_the_server_sends() -> None:
    from darkroom.core.webhooks import EVENT_NAMES
    from darkroom.sdk.types import WEBHOOK_EVENTS

    assert WEBHOOK_EVENTS == EVENT_NAMES


def test_disabled_endpoint_gets_nothing_and_its_pending_deliveries_wait(
    server_factory: ServerFactory, receiver: Receiver
) -> None:
    """Disabled: no attempt of what was pending, no delivery for new events; enabled again:
    what waited goes out. Shown in list and get; bad bodies are 400s naming the field."""
    receiver.accepting = False
    server = server_factory(**FAST)
    account, other = server.account(), server.account()
    webhook_id = register(server, account, receiver, events=["image.completed"])
    first = create(server, account)
    assert server.wait(account, first)["status"] == "complete"
    wait_until(lambda: len(receiver.received) >= 1)  # refused, and being retried
    with server.client(account) as client:
        response = client.patch(f"/v1/webhooks/{webhook_id}", json={"disabled": True})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "disabled" and response.json()["disabled_at"]
        assert client.get(f"/v1/webhooks/{webhook_id}").json()["status"] == "disabled"
        assert [h["status"] for h in client.get("/v1/webhooks").json()["data"]] == ["disabled"]
        for bad, field in [
            ({"disabled": "yes"}, "disabled"),
            ({"disabled": 1}, "disabled"),
            ({}, "disabled"),
            ({"disabled": True, "url": "http://x"}, "url"),
        ]:
            refused = client.patch(f"/v1/webhooks/{webhook_id}", json=bad)
            assert refused.status_code == 400, (bad, refused.text)
            assert field in refused.json()["message"], refused.json()
        test = client.post(f"/v1/webhooks/{webhook_id}/test")
        assert test.status_code == 409 and "disabled" in test.json()["message"]
    with server.client(other) as client:
        assert (
            client.patch(f"/v1/webhooks/{webhook_id}", json={"disabled": False}).status_code == 404
        )
        assert client.get(f"/v1/webhooks/{webhook_id}").status_code == 404
    time.sleep(0.3)  # an attempt in flight when it was disabled ends
    tried = len(receiver.received)
    second = create(server, account)
    assert server.wait(account, second)["status"] == "complete"
    time.sleep(0.6)  # several retry periods
    assert len(receiver.received) == tried  # nothing sent while disabled
    (held,) = deliveries(server, account, webhook_id)  # none written for the second project
    assert held["status"] == "pending" and held["project_id"] == first

    receiver.accepting = True
    with server.client(account) as client:
        enabled = client.patch(f"/v1/webhooks/{webhook_id}", json={"disabled": False})
        assert enabled.json()["status"] == "enabled" and enabled.json()["disabled_at"] is None
    receiver.wait_for(1, "image.completed")
    assert receiver.accepted()[0].webhook_id == held["id"]
    wait_until(lambda: deliveries(server, account, webhook_id)[0]["status"] == "delivered")


def test_send_a_test_event(server_factory: ServerFactory, receiver: Receiver) -> None:
    server = server_factory(**FAST)
    account = server.account()
    webhook_id = register(server, account, receiver, events=["image.completed"])
    with server.client(account) as client:
        response = client.post(f"/v1/webhooks/{webhook_id}/test")
        assert response.status_code == 200, response.text
        sent = response.json()
        assert sent["event"] == "webhook.test" and sent["status"] == "delivered"
        assert sent["last_status_code"] == 204 and sent["project_id"] is None
        (got,) = receiver.accepted("webhook.test")
        assert got.webhook_id == sent["id"] and got.signature_ok
        headers = {
            "magic-hour-event-timestamp": str(got.timestamp),
            "magic-hour-event-signature": got.signature,
        }
        event = verify_webhook(receiver.secret, got.body, headers)
        assert event["payload"]["webhook_id"] == webhook_id
        assert event["payload"]["url"] == receiver.url

        receiver.accepting = False  # refused: the answer says why, and it is retried
        refused = client.post(f"/v1/webhooks/{webhook_id}/test").json()
        assert refused["status"] == "pending" and refused["last_error"] == "HTTP 500"
        assert refused["history"][0]["status_code"] == 500

        receiver.accepting, receiver.slow_first, receiver.delay = True, 10**6, 2
        queued = client.post(f"/v1/webhooks/{webhook_id}/test", params={"wait": 0})
        assert queued.status_code == 202 and queued.json()["attempts"] == 0
        for wait in ("31", "-1", "soon"):
            bad = client.post(f"/v1/webhooks/{webhook_id}/test", params={"wait": wait})
            assert bad.status_code in (400, 422), bad.text
        assert client.post("/v1/webhooks/wh_nope/test").status_code == 404
    listed = deliveries(server, account, webhook_id)
    assert [d["event"] for d in listed] == ["webhook.test"] * 3


def test_sdk_and_cli_test_and_disable(server: LiveServer, receiver: Receiver) -> None:
    import asyncio
    import os
    import subprocess
    import sys

    from darkroom import AsyncClient

    account = server.account()
    with Client(token=account.key, base_url=server.url) as client:
        hook = client.v1.webhooks.create(url=receiver.url)
        receiver.secret = hook.secret or ""
        assert hook.status == "enabled"
        delivery = client.v1.webhooks.test(id=hook.id)
        assert delivery.event == "webhook.test" and delivery.status == "delivered"
        disabled = client.v1.webhooks.update(id=hook.id, disabled=True)
        assert disabled.status == "disabled" and disabled.disabled_at is not None
        assert client.v1.webhooks.get(id=hook.id).status == "disabled"

    async def run() -> None:
        async with AsyncClient(token=account.key, base_url=server.url) as client:
            assert (await client.v1.webhooks.get(id=hook.id)).status == "disabled"
            enabled = await client.v1.webhooks.update(id=hook.id, disabled=False)
            assert enabled.status == "enabled"
            tested = await client.v1.webhooks.test(id=hook.id, wait=10)
            assert tested.status == "delivered"

    asyncio.run(run())
    assert len(receiver.accepted("webhook.test")) == 2

    env = {**os.environ, "DARKROOM_API_KEY": account.key, "DARKROOM_BASE_URL": server.url}

    def darkroom(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "darkroom.cli.main", "webhooks", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    tested = darkroom("test", hook.id)
    assert tested.returncode == 0, tested.stderr
    assert "webhook.test" in tested.stdout and "delivered: HTTP 204" in tested.stdout
    off = darkroom("disable", hook.id)
    assert off.returncode == 0 and "disabled" in off.stdout
    assert f"{hook.id}  disabled" in darkroom("list").stdout
    assert darkroom("test", hook.id).returncode == 10  # 409: enable it first
    assert darkroom("enable", hook.id).returncode == 0
    receiver.accepting = False
    refused = darkroom("test", hook.id)
    assert refused.returncode == 14 and "HTTP 500" in refused.stdout
    assert len(receiver.accepted("webhook.test")) == 3


def test_a_delivery_held_past_its_age_expires_unsent(
    server_factory: ServerFactory, receiver: Receiver
) -> None:
    """Pending deliveries of a disabled endpoint wait for it, but no longer than
    webhook_max_age_seconds: enabled after that, the endpoint is not sent stale news."""
    max_age = 4.0
    receiver.accepting = False
    server = server_factory(**FAST, webhook_max_age_seconds=max_age)
    account = server.account()
    webhook_id = register(server, account, receiver, events=["image.completed"])
    project = create(server, account)
    wait_until(lambda: len(receiver.received) >= 1)  # refused, and being retried
    with server.client(account) as client:
        assert (
            client.patch(f"/v1/webhooks/{webhook_id}", json={"disabled": True}).status_code == 200
        )
    (held,) = deliveries(server, account, webhook_id)
    assert held["status"] == "pending" and held["project_id"] == project
    created = datetime.fromisoformat(held["created_at"])
    wait_until(lambda: datetime.now(UTC) > created + timedelta(seconds=max_age + 0.2))
    tried = len(receiver.received)
    receiver.accepting = True
    with server.client(account) as client:
        assert (
            client.patch(f"/v1/webhooks/{webhook_id}", json={"disabled": False}).status_code == 200
        )
    wait_until(lambda: deliveries(server, account, webhook_id)[0]["status"] == "failed")
    (expired,) = deliveries(server, account, webhook_id)
    assert "expired" in expired["last_error"]
    assert len(receiver.received) == tried  # nothing sent
