"""A loopback HTTP proxy in front of a live darkroom server that misbehaves on purpose: it answers
some requests with an error status, or forwards them and then drops the connection before the
client hears the answer (the server did the work; the client saw a network failure)."""

from __future__ import annotations

import errno
import io
import os
import socket
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

PASS = "pass"
DROP_AFTER = "drop-after"  # forward, wait for the answer, then hang up without sending it
DROP_BEFORE = "drop-before"  # hang up without forwarding
STRIP_QUERY = "strip-query"  # forward without the query string (a server that has no long poll)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    action: str


@dataclass
class Rule:
    """``actions`` are used one per matching request (``method`` and path prefix); afterwards
    ``then`` applies. An action is PASS, DROP_AFTER, DROP_BEFORE, STRIP_QUERY or a status line
    answer such as ``"503"`` or ``"429 retry-after=1"``."""

    method: str
    prefix: str
    actions: list[str]
    then: str = PASS

    def take(self) -> str:
        return self.actions.pop(0) if self.actions else self.then


@dataclass
class FaultProxy:
    """Listens at once; forwards to ``upstream`` (settable later: a server whose download links
    must point at the proxy is started after it)."""

    upstream: str = ""  # http://127.0.0.1:PORT
    rules: list[Rule] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                proxy.handle(self.connection, self.rfile)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def action_for(self, method: str, path: str) -> str:
        with self.lock:
            for rule in self.rules:
                if rule.method == method and path.startswith(rule.prefix):
                    return rule.take()
        return PASS

    def handle(self, conn: socket.socket, rfile: object) -> None:
        head, body = read_request(rfile)
        if not head:
            return
        request_line, *header_lines = head.split("\r\n")
        method, target, version = request_line.split(" ", 2)
        headers = dict(line.split(": ", 1) for line in header_lines if ": " in line)
        action = self.action_for(method, target)
        with self.lock:
            self.seen.append(
                Seen(method, target, {k.lower(): v for k, v in headers.items()}, action)
            )
        if action == DROP_BEFORE:
            return
        if action[:1].isdigit():
            conn.sendall(canned(action))
            return
        if action == STRIP_QUERY:
            parts = urlsplit(target)
            target = urlunsplit(("", "", parts.path, "", ""))
        kept = [
            line
            for line in header_lines
            if line and not line.lower().startswith(("connection:", "keep-alive:"))
        ]
        raw = "\r\n".join([f"{method} {target} {version}", *kept, "Connection: close", "", ""])
        upstream = urlsplit(self.upstream)
        target = (upstream.hostname or "127.0.0.1", upstream.port or 80)
        answer = forward(target, raw.encode("latin-1") + body)
        if action == DROP_AFTER:
            return  # the server did the work; the client never hears of it
        conn.sendall(answer)


def read_request(rfile: object) -> tuple[str, bytes]:
    lines = []
    while True:
        line = rfile.readline(65536)  # type: ignore[attr-defined]
        if not line or line in (b"\r\n", b"\n"):
            break
        lines.append(line.decode("latin-1").rstrip("\r\n"))
    head = "\r\n".join(lines)
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = rfile.read(length) if length else b""  # type: ignore[attr-defined]
    return head, body


def forward(target: tuple[str, int], raw: bytes) -> bytes:
    with socket.create_connection(target, timeout=90) as upstream:
        upstream.sendall(raw)
        return b"".join(iter(lambda: upstream.recv(65536), b""))


def canned(action: str) -> bytes:
    status, *options = action.split()
    extra = [f"{name}: {value}" for name, _, value in (option.partition("=") for option in options)]
    body = b'{"message": "injected by the test proxy"}'
    lines = [
        f"HTTP/1.1 {status} Injected",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *extra,
        "",
        "",
    ]
    return "\r\n".join(lines).encode() + body


def creates(proxy: FaultProxy) -> Iterator[Seen]:
    return (s for s in proxy.seen if s.method == "POST" and s.path == "/v1/ai-image-generator")


# -- storage that refuses writes ------------------------------------------------------------------

FULL = "full"  # no room left: a full disk (ENOSPC), a bucket over its quota (QuotaExceeded)
REFUSED = "refused"  # the write is refused: a read-only disk (EROFS), a bucket's AccessDenied


def refuse_writes(monkeypatch: Any, store: object, fault: str) -> None:
    """Make ``store`` (a LocalStore or an S3Store) fail every write the way the real thing does:
    the local store's file write raises the OSError a full or read-only disk gives (after the
    temporary file was created, as it happens), the bucket's PutObject answers the S3 error.
    ``monkeypatch.undo()`` lifts the fault."""
    from botocore.exceptions import ClientError

    from darkroom.storage.local import LocalStore
    from darkroom.storage.s3 import S3Store

    if isinstance(store, S3Store):
        code = "QuotaExceeded" if fault == FULL else "AccessDenied"

        def put_object(**params: Any) -> None:
            error = {"Error": {"Code": code, "Message": f"injected {code}"}}
            raise ClientError(error, "PutObject")  # type: ignore[arg-type]

        monkeypatch.setattr(store._client, "put_object", put_object)
        return
    assert isinstance(store, LocalStore)
    number = errno.ENOSPC if fault == FULL else errno.EROFS
    root = str(store.root.resolve())
    real_fdopen = os.fdopen

    class Refusing(io.BufferedWriter):
        def write(self, data: Any) -> int:
            raise OSError(number, os.strerror(number))

    def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path.startswith(root) and os.path.basename(path).startswith(".tmp-"):
            return Refusing(io.FileIO(fd, "wb"))
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", fdopen)
