"""A webhook receiver for tests: a real HTTP server on loopback that verifies every delivery's
signature, can refuse the first attempts or answer slowly, and keeps what it was sent."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.waiting import wait_until


@dataclass
class Received:
    webhook_id: str
    timestamp: int
    signature: str  # the magic-hour-event-signature header as sent
    signature_ok: bool
    body: bytes
    answered: int  # the status code the receiver gave
    path: str = ""  # the request's path (endpoints of one receiver differ by path)
    at: float = 0.0  # time.time() when the request arrived

    @property
    def event(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.body)
        return result


@dataclass
class Receiver:
    """``fail_first`` attempts of each webhook-id get a 500 and ``slow_first`` attempts an answer
    after ``delay`` seconds (or at :meth:`close`, whichever comes first); ``accepting=False``
    refuses everything. ``peak`` is the most requests held at once per path, ``peak_total``
    over all paths."""

    secret: str = ""
    fail_first: int = 0
    slow_first: int = 0
    delay: float = 0.0
    accepting: bool = True
    received: list[Received] = field(default_factory=list)
    peak: Counter[str] = field(default_factory=Counter)
    peak_total: int = 0
    _in_flight: Counter[str] = field(default_factory=Counter)
    _seen: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closing: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver._handle(self, body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        arrived, path = time.time(), handler.path
        with self._lock:
            self._in_flight[path] += 1
            self.peak[path] = max(self.peak[path], self._in_flight[path])
            self.peak_total = max(self.peak_total, self.in_flight)
        try:
            self._answer(handler, body, arrived)
        finally:
            with self._lock:
                self._in_flight[path] -= 1

    @property
    def in_flight(self) -> int:
        """Requests being answered now."""
        return sum(self._in_flight.values())

    def _answer(self, handler: BaseHTTPRequestHandler, body: bytes, arrived: float) -> None:
        webhook_id = handler.headers.get("webhook-id", "")
        stamp = handler.headers.get("magic-hour-event-timestamp", "0")
        given = handler.headers.get("magic-hour-event-signature", "")
        # Checked here from the published scheme, independently of darkroom's own helper.
        expected = hmac.new(
            self.secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256
        ).hexdigest()
        with self._lock:
            self._seen[webhook_id] += 1
            attempt = self._seen[webhook_id]
        if attempt <= self.slow_first:
            self._closing.wait(self.delay)
        ok = self.accepting and attempt > self.fail_first
        code = 204 if ok else 500
        with self._lock:
            self.received.append(
                Received(
                    webhook_id,
                    int(stamp),
                    given,
                    hmac.compare_digest(expected, given),
                    body,
                    code,
                    handler.path,
                    arrived,
                )
            )
        try:
            handler.send_response(code)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        except OSError:
            pass  # the sender gave up waiting

    def accepted(self, event_type: str | None = None) -> list[Received]:
        with self._lock:
            return [
                r
                for r in self.received
                if r.answered < 300 and (event_type is None or r.event["type"] == event_type)
            ]

    def wait_for(self, count: int, event_type: str | None = None, timeout: float = 20) -> None:
        """Until ``count`` events (of ``event_type``) were accepted."""
        wait_until(
            lambda: len(self.accepted(event_type)) >= count,
            lambda: (
                f"receiver accepted {len(self.accepted(event_type))} of {count} "
                f"{event_type or 'events'}"
            ),
            timeout=timeout,
        )

    def close(self) -> None:
        self._closing.set()  # held requests are answered now
        self.server.shutdown()
        self.server.server_close()
