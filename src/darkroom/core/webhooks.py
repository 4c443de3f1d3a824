"""Webhooks: an account's endpoints, and the deliveries that tell them what its projects did.

A status change writes one delivery per subscribed endpoint *in the transaction of the change*
(:meth:`Webhooks.record` is a :class:`~darkroom.core.jobs.Jobs` recorder), so a delivery exists
before anything is sent, and exists exactly when the change does, whatever crashes. The body is
``{"type": <event>, "payload": <the GET project object>}``, frozen at that moment; the sender
(``worker/webhook_sender.py``) signs and posts it, and retries it until it is delivered.

An endpoint can be disabled by its owner and enabled again: while disabled, new events are not
written for it (like Stripe's disabled endpoints, it misses them), and deliveries already pending
are held, not canceled: they were owed before, and go out once it is enabled (those past the
sender's max age then fail on their first refused attempt; any can be re-sent by hand). A test
event (``webhook.test``) goes to one endpoint on request, whatever events it subscribed to.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import anyio
from sqlalchemy import Connection

from darkroom.core.errors import InvalidRequest, NotFound, WebhookDisabled, listing
from darkroom.core.ids import new_id
from darkroom.core.project_view import iso
from darkroom.core.projects import Project, Transition
from darkroom.core.status import Status
from darkroom.core.webhook_secrets import SecretBox, new_secret, stored_form
from darkroom.net import guard
from darkroom.net.fetch import DEFAULT_PORTS, FetchError, parse_url
from darkroom.queue.notify import WEBHOOKS
from darkroom.store import clock
from darkroom.store import webhooks as sql
from darkroom.store.database import Database, utcnow

EVENTS: dict[Status, str] = {
    Status.RENDERING: "image.started",
    Status.COMPLETE: "image.completed",
    Status.ERROR: "image.errored",
    Status.CANCELED: "image.canceled",
}
EVENT_NAMES = tuple(EVENTS.values())
TEST_EVENT = "webhook.test"  # sent on request only, to one endpoint
MAX_ENDPOINTS = 20

Render = Callable[[Project], dict[str, Any]]


Row = Any  # a webhook_endpoints or webhook_deliveries row


@dataclass(frozen=True)
class Delivery:
    """A delivery row with its attempts, oldest first."""

    row: Row
    attempts: list[Row]


class Webhooks:
    def __init__(
        self,
        db: Database,
        render: Render,
        *,
        allow_private: bool,
        box: SecretBox,
        max_age: float = 24 * 3600.0,
    ) -> None:
        """``box`` seals the endpoints' signing secrets before they are stored; ``max_age``:
        the seconds after its event that a delivery is still worth sending."""
        self.db = db
        self.max_age = max_age
        self.render = render
        self.allow_private = allow_private
        self.box = box

    # -- endpoints -----------------------------------------------------------------------------

    async def create(self, account_id: str, url: str, events: list[str] | None) -> Row:
        """Register an endpoint; its row, with the secret in clear (stored sealed, unless older
        nodes may still read it: webhook_secrets.stored_form), which the API shows this once."""
        chosen = _events(events)
        await self.check_url(url)
        secret = new_secret()
        row = {
            "id": new_id("wh"),
            "account_id": account_id,
            "url": url,
            "events": json.dumps(chosen),
            "secret": secret,  # stored as stored_form says
        }
        created = await anyio.to_thread.run_sync(self._insert_endpoint, row)
        return SimpleNamespace(**{**created._mapping, "secret": secret})

    def _insert_endpoint(self, row: dict[str, Any]) -> Row:
        def insert(conn: Connection) -> Row:
            if len(sql.active_endpoints(conn, row["account_id"])) >= MAX_ENDPOINTS:
                raise InvalidRequest(f"an account can have at most {MAX_ENDPOINTS} webhooks")
            stored = stored_form(conn, self.box, row["secret"])
            sql.insert_endpoint(conn, **{**row, "secret": stored}, created_at=utcnow())
            return sql.get_endpoint(conn, row["id"])

        return self.db.transact(insert)

    async def check_url(self, url: str) -> None:
        """Refuse a URL that is not http(s), or whose host is (or resolves to) a loopback,
        private or link-local address unless the operator allows those."""
        try:
            parsed = parse_url(url)
        except FetchError as exc:
            raise InvalidRequest(f"webhook url: {exc.message}", field="url") from None
        port = DEFAULT_PORTS[parsed.scheme] if parsed.port is None else parsed.port
        try:
            await guard.resolve(
                parsed.raw_host.decode("ascii"), port, allow_private=self.allow_private
            )
        except guard.AddressRefused as exc:
            raise InvalidRequest(f"webhook url: {exc.message}", field="url") from None

    def endpoints(self, account_id: str) -> list[Row]:
        with self.db.read() as conn:
            return sql.active_endpoints(conn, account_id)

    def get(self, account_id: str, endpoint_id: str) -> Row:
        with self.db.read() as conn:
            return self._endpoint(conn, account_id, endpoint_id)

    def set_disabled(self, account_id: str, endpoint_id: str, disabled: bool) -> Row:
        """Disable the endpoint (nothing is sent to it; see the module's docstring) or enable it
        again (what it had pending goes out now). Setting the state it has changes nothing."""
        with self.db.write() as conn:
            row = self._endpoint(conn, account_id, endpoint_id)
            if disabled and row.disabled_at is None:
                sql.set_disabled(conn, endpoint_id, utcnow())
            elif not disabled and row.disabled_at is not None:
                sql.set_disabled(conn, endpoint_id, None)
                # What waited longer than the policy's age is no longer news: not sent.
                why = (
                    f"expired: not sent within {self.max_age:g} s of its event (the endpoint "
                    "was disabled meanwhile)"
                )
                sql.expire_pending(conn, endpoint_id, self.max_age, why)
                self.db.notify_in(conn, WEBHOOKS, endpoint_id)  # its held deliveries are due
            return sql.get_endpoint(conn, endpoint_id)

    async def send_test(self, account_id: str, endpoint_id: str, wait: float) -> Delivery:
        """Queue a signed ``webhook.test`` event to the endpoint, and wait up to ``wait``
        seconds for its first attempt: the delivery, attempted or still pending."""
        delivery_id = await anyio.to_thread.run_sync(self._queue_test, account_id, endpoint_id)
        deadline = time.monotonic() + wait
        while True:
            found = await anyio.to_thread.run_sync(self._delivery, delivery_id)
            if found.row.attempts or time.monotonic() >= deadline:
                return found
            await anyio.sleep(0.05)

    def _queue_test(self, account_id: str, endpoint_id: str) -> str:
        with self.db.write() as conn:
            endpoint = self._endpoint(conn, account_id, endpoint_id)
            if endpoint.disabled_at is not None:
                raise WebhookDisabled(
                    f"webhook {endpoint_id!r} is disabled: enable it to send it a test event"
                )
            now = clock.read(conn)
            delivery_id = new_id("msg")
            payload = {"webhook_id": endpoint_id, "url": endpoint.url, "created_at": iso(now)}
            body = json.dumps({"type": TEST_EVENT, "payload": payload}, separators=(",", ":"))
            sql.insert_deliveries(
                conn, [_delivery_row(delivery_id, endpoint_id, account_id, TEST_EVENT, None, body)]
            )
            self.db.notify_in(conn, WEBHOOKS, delivery_id)
        return delivery_id

    def _delivery(self, delivery_id: str) -> Delivery:
        """The row, then its attempts: the row says whether one was recorded (its count and
        status change together; the history, read after, may hold one more)."""
        with self.db.read() as conn:
            return Delivery(
                sql.get_delivery(conn, delivery_id), sql.attempts_of(conn, [delivery_id])
            )

    def delete(self, account_id: str, endpoint_id: str) -> None:
        """Delete an endpoint; what it had still to receive is canceled."""
        with self.db.write() as conn:
            self._endpoint(conn, account_id, endpoint_id)
            sql.delete_endpoint(conn, endpoint_id, utcnow())

    def deliveries(
        self, account_id: str, endpoint_id: str, *, limit: int = 50, status: str | None = None
    ) -> list[Delivery]:
        """The endpoint's deliveries, newest first, each with its attempts."""
        with self.db.read() as conn:
            self._endpoint(conn, account_id, endpoint_id)
            rows = sql.deliveries_of(conn, endpoint_id, limit, status)
            attempts = sql.attempts_of(conn, [row.id for row in rows])
        by_delivery: dict[str, list[Any]] = {}
        for attempt in attempts:
            by_delivery.setdefault(attempt.delivery_id, []).append(attempt)
        return [Delivery(row, by_delivery.get(row.id, [])) for row in rows]

    def resend(self, account_id: str, endpoint_id: str, delivery_id: str) -> Delivery:
        """Send a delivery again now (same webhook-id and body), whatever became of it."""
        with self.db.write() as conn:
            self._endpoint(conn, account_id, endpoint_id)
            row = sql.get_delivery(conn, delivery_id)
            if row is None or row.endpoint_id != endpoint_id:
                raise NotFound(f"no delivery {delivery_id!r} for webhook {endpoint_id!r}")
            sql.resend(conn, delivery_id)
            row = sql.get_delivery(conn, delivery_id)
            attempts = sql.attempts_of(conn, [delivery_id])
            self.db.notify_in(conn, WEBHOOKS, delivery_id)  # wakes the senders, on any node
        return Delivery(row, attempts)

    def _endpoint(self, conn: Connection, account_id: str, endpoint_id: str) -> Any:
        row = sql.get_endpoint(conn, endpoint_id)
        if row is None or row.account_id != account_id or row.deleted_at is not None:
            raise NotFound(f"no webhook {endpoint_id!r}")
        return row

    # -- events --------------------------------------------------------------------------------

    def record(self, conn: Connection, change: Transition) -> None:
        """A :class:`Jobs` recorder: write a delivery of the change's event to each endpoint of
        the account that subscribed to it (once per project and event, even if a restart
        makes a project start twice).

        A project that a request waits for (the OpenAI dialect's synchronous answer) is
        complete for its receivers only once the answer is written (``Jobs.answered`` records
        it then): should the request die first, the project is refunded, and they hear
        ``image.canceled``, never an ``image.completed`` for images nobody paid for."""
        event = EVENTS.get(change.project.status)
        if event is None or change.previous is None:
            return
        project = change.project
        if project.status is Status.COMPLETE and project.answer_pending:
            return
        endpoints = [
            row
            for row in sql.active_endpoints(conn, project.account_id)
            if row.disabled_at is None and event in json.loads(row.events)
        ]
        if not endpoints:
            return
        sent = sql.existing_events(conn, project.id, event, [row.id for row in endpoints])
        fresh = [row for row in endpoints if row.id not in sent]
        if not fresh:
            return
        body = json.dumps({"type": event, "payload": self.render(project)}, separators=(",", ":"))
        sql.insert_deliveries(
            conn,
            [
                _delivery_row(new_id("msg"), row.id, project.account_id, event, project.id, body)
                for row in fresh
            ],
        )
        # Only changes that wrote deliveries wake the senders (most, of accounts without
        # webhooks, write none), on whichever node they run, once this commits.
        self.db.notify_in(conn, WEBHOOKS, project.id)


def _delivery_row(
    delivery_id: str,
    endpoint_id: str,
    account_id: str,
    event: str,
    project_id: str | None,
    body: str,
) -> dict[str, Any]:
    """A new delivery (made, and due, when it is inserted: ``store/webhooks.insert_deliveries``)."""
    return {
        "id": delivery_id,
        "endpoint_id": endpoint_id,
        "account_id": account_id,
        "event": event,
        "project_id": project_id,
        "body": body,
        "status": sql.PENDING,
        "attempts": 0,
    }


def _events(events: list[str] | None) -> list[str]:
    if events is None:
        return list(EVENT_NAMES)
    if not events:
        raise InvalidRequest("events must name at least one event", field="events")
    unknown = [e for e in events if e not in EVENT_NAMES]
    if unknown:
        raise InvalidRequest(
            f"unknown event {unknown[0]!r}; events are {listing(EVENT_NAMES)}", field="events"
        )
    return list(dict.fromkeys(events))
