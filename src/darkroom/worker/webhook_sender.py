"""The webhook sender: posts due deliveries, signed, and schedules retries.

A delivery is taken under a lease in this sender's name (``owner``; so no two sends of it
overlap, whichever process runs them), posted to the address the URL resolves to once the
address policy allowed it (``net/fetch.py``: no redirects followed, no proxy from the
environment), and answered within ``timeout`` seconds with a 2xx, or tried again after ``retry``
seconds, doubling (with ±20 % jitter) up to ``retry_max``, until it is ``max_age`` seconds old;
then it has failed. Every attempt is logged in the database; its outcome moves the delivery only
while the lease is still this sender's (fencing: a sender that stalled past its lease cannot
overwrite what the sender that took over recorded). A sender that stops frees its leases; one
that died lets them go when they pass. A lease's end, and when a delivery is due or too old,
are on the database's clock (``store/clock.py``): a sender whose own clock runs ahead takes no
delivery that another holds. Receivers may see a delivery twice (the same ``webhook-id``), never
not at all.

Deliveries are shared fairly, so that one account's slow endpoints do not hold up the others'.
Each take (``store/webhooks.due_ids``) goes round the accounts, each one's oldest due delivery
first, and skips an endpoint that already has ``endpoint_concurrency`` sends in flight, counted
over the leases of every sender in the cluster; and this sender gives one account at most
``account_share`` of its ``concurrency`` slots. An account whose endpoints all hang so holds
at most half the slots of each sender (by default), and another account's delivery takes a free
one as soon as it is written.

Every database call runs on a thread, retried on transient errors (``Database.transact``); one
that still fails is logged and the loop carries on at its next turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Connection

from darkroom import __version__
from darkroom.core.ids import new_id
from darkroom.core.loops import call_soon_in
from darkroom.core.webhook_secrets import SecretBox, SecretUnreadable
from darkroom.net import guard
from darkroom.net.fetch import FetchError, guarded_client, parse_url, vetted_request
from darkroom.sdk.webhooks import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from darkroom.store import clock
from darkroom.store import webhooks as sql
from darkroom.store.database import Database, as_utc, is_transient

log = logging.getLogger("darkroom.webhooks")

# Called after each attempt with the event and "delivered", "failed_attempt" or "gave_up".
AttemptHook = Callable[[str, str], None]


@dataclass(frozen=True)
class Policy:
    timeout: float = 10.0
    retry: float = 10.0
    retry_max: float = 3600.0
    max_age: float = 24 * 3600.0
    concurrency: int = 8
    endpoint_concurrency: int = 2
    account_share: float = 0.5
    poll: float = 1.0
    allow_private: bool = False

    @property
    def account_slots(self) -> int:
        """The most sends one account may have in flight in one sender."""
        return max(1, int(self.concurrency * self.account_share))

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt."""
        base: float = min(self.retry_max, self.retry * 2.0 ** min(attempts - 1, 40))
        return base * random.uniform(0.8, 1.2)


class WebhookSender:
    def __init__(
        self,
        db: Database,
        policy: Policy,
        owner: str | None = None,
        *,
        box: SecretBox | None = None,
        hooks: Sequence[AttemptHook] = (),
    ) -> None:
        """``owner`` names this sender on the leases it takes (at most 40 characters); by
        default a fresh random id, so no two senders share one. ``box`` opens the endpoints'
        sealed secrets (without it, only secrets stored in clear can sign). Each of ``hooks``
        is told of every attempt (its event type and outcome: the metrics count them)."""
        self.db = db
        self.policy = policy
        self.owner = owner or new_id("node")
        self.box = box or SecretBox(())
        self.hooks = tuple(hooks)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._sending: dict[asyncio.Task[None], str] = {}  # each send's account
        # The take in progress on its thread: a cancel does not stop a thread, so stop() waits
        # for it before freeing the leases (else a lease it commits afterwards would hold its
        # deliveries for a lease's length after this sender is gone).
        self._taking: asyncio.Task[list[Any]] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="darkroom-webhooks")

    async def stop(self) -> None:
        """Stop sending, and free this sender's leases: an attempt cut off is made again soon,
        by whichever sender takes it."""
        tasks = [t for t in (self._task, *self._sending) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None
        if self._taking is not None:
            with contextlib.suppress(Exception):
                await self._taking
            self._taking = None
        if tasks:
            try:
                await asyncio.to_thread(self._release)
            except Exception:
                log.exception("freeing the webhook leases of %s failed", self.owner)

    def wake(self) -> None:
        """New or resent deliveries are committed (callable from any thread)."""
        loop, wakeup = self._loop, self._wakeup
        if loop is not None and wakeup is not None:
            call_soon_in(loop, wakeup.set)

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            free = self.policy.concurrency - len(self._sending)
            due: list[Any] = []
            pause = self.policy.poll
            try:
                if free > 0:
                    held = Counter(self._sending.values())  # read here, not on the thread
                    self._taking = asyncio.create_task(asyncio.to_thread(self._take, free, held))
                    due = await asyncio.shield(self._taking)
                if not due:
                    pause = await asyncio.to_thread(self._pause)
            except RuntimeError:  # no more threads: the interpreter is exiting
                return
            except Exception as exc:
                log.warning("looking for webhook deliveries failed", exc_info=not is_transient(exc))
            for delivery in due:
                task = asyncio.create_task(self._send(delivery))
                self._sending[task] = delivery.account_id
                task.add_done_callback(self._sent)
            if not due or len(self._sending) >= self.policy.concurrency:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that races its timeout, and stop() would wait forever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await self._wakeup.wait()
                self._wakeup.clear()

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.pop(task, None)
        if self._wakeup is not None:
            self._wakeup.set()

    def _release(self) -> None:
        self.db.transact(lambda conn: sql.release(conn, self.owner), durable=False)

    def _take(self, limit: int, held: Counter[str]) -> list[Any]:
        """Lease up to ``limit`` due deliveries to this sender, chosen fairly (see the module's
        docstring), given the sends it has in flight by account (``held``); each with its
        account, URL and secret."""
        policy = self.policy
        lease = policy.timeout + 30  # seconds: a send's longest, and a margin

        def take(conn: Connection) -> list[Any]:
            due = sql.due_ids(
                conn,
                limit,
                per_endpoint=policy.endpoint_concurrency,
                per_account=policy.account_slots,
                held=held,
            )
            taken = [
                sql.to_send(conn, delivery_id)
                for delivery_id in due
                if sql.lease(conn, delivery_id, self.owner, lease)
            ]
            return [row for row in taken if row is not None]

        return self.db.transact(take, durable=False)

    def _pause(self) -> float:
        """Seconds until the next delivery is due, at most the poll interval (a send that ends
        here wakes the loop sooner, for what waited on its endpoint or account)."""
        wait = self.db.query(sql.seconds_to_next_due)
        if wait is None:
            return self.policy.poll
        return min(self.policy.poll, max(wait, 0.01))

    async def _send(self, delivery: Any) -> None:
        started = time.monotonic()
        status_code, error = await self._post(delivery)
        took_ms = round((time.monotonic() - started) * 1000)
        try:
            held, outcome = await asyncio.to_thread(
                self._record, delivery, status_code, error, took_ms
            )
        except Exception as exc:  # the lease passes, and the delivery is sent again
            log.warning(
                "recording webhook delivery %s failed", delivery.id, exc_info=not is_transient(exc)
            )
            return
        if not held:
            log.warning(
                "webhook %s %s: %s, but no longer ours to record (canceled, or its lease "
                "passed and another sender took it)",
                delivery.id,
                delivery.event,
                outcome,
            )
            return
        log.info(
            "webhook %s %s: %s",
            delivery.id,
            delivery.event,
            outcome if error is None else f"{outcome} ({error})",
        )
        for hook in self.hooks:
            hook(delivery.event, outcome)

    def _record(
        self, delivery: Any, status_code: int | None, error: str | None, took_ms: int
    ) -> tuple[bool, str]:
        """Log the attempt and move the delivery on; whether this sender still held it, and the
        outcome. Its times (when it was made, when it is tried again, whether it is too old by
        then) are the database's."""

        def record(conn: Connection) -> tuple[bool, str]:
            now = clock.read(conn)
            outcome, values = self._outcome(delivery, status_code, error, now)
            attempt = {
                "attempted_at": now - timedelta(milliseconds=took_ms),
                "status_code": status_code,
                "error": error,
                "duration_ms": took_ms,
            }
            held = sql.record_attempt(conn, delivery.id, self.owner, attempt, values)
            return held, outcome

        return self.db.transact(record)

    def _outcome(
        self, delivery: Any, status_code: int | None, error: str | None, now: datetime
    ) -> tuple[str, dict[str, Any]]:
        values: dict[str, Any] = {"last_status_code": status_code, "last_error": error}
        if error is None:
            return "delivered", {**values, "status": sql.DELIVERED, "delivered_at": now}
        retry_at = now + timedelta(seconds=self.policy.delay(delivery.attempts + 1))
        if retry_at > self._deadline(delivery.created_at):
            return "gave_up", {**values, "status": sql.FAILED, "next_attempt_at": None}
        return "failed_attempt", {**values, "next_attempt_at": retry_at}

    def _deadline(self, created_at: datetime) -> datetime:
        return as_utc(created_at) + timedelta(seconds=self.policy.max_age)

    async def _post(self, delivery: Any) -> tuple[int | None, str | None]:
        """The answer's status code, and why the attempt failed (None if it did not)."""
        try:
            secret = self.box.open(delivery.secret)
        except SecretUnreadable as exc:  # nothing is sent unsigned; retried, as any failure
            return None, str(exc)
        body = delivery.body.encode()
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"darkroom-webhooks/{__version__}",
            ID_HEADER: delivery.id,
            TIMESTAMP_HEADER: str(stamp),
            SIGNATURE_HEADER: signature(secret, stamp, body),
        }
        timeout = self.policy.timeout
        try:
            url = parse_url(delivery.url)
            async with asyncio.timeout(timeout), guarded_client(timeout) as client:
                request = await vetted_request(
                    client,
                    url,
                    self.policy.allow_private,
                    method="POST",
                    headers=headers,
                    content=body,
                )
                response = await client.send(request, stream=True)
                await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            return None, f"no answer within {timeout:g} s"
        except httpx.ConnectError:
            return None, "could not connect"
        except httpx.HTTPError:
            return None, "the connection failed"
        except (guard.AddressRefused, FetchError) as exc:
            return None, exc.message
        code = response.status_code
        if 200 <= code < 300:
            return code, None
        if 300 <= code < 400:
            return code, f"HTTP {code} (redirects are not followed)"
        return code, f"HTTP {code}"
