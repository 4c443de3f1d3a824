"""A TCP proxy on loopback that can stop forwarding without closing anything: a database whose
network path black-holes (packets dropped, no reset), or a frozen server, as its clients see it.

While held, the bytes each side sends are kept (as the network keeps retransmitting them), new
connections are accepted but their bytes go nowhere, and nothing is closed; once forwarding
resumes, what was kept is delivered, in order. What a client closes meanwhile is closed upstream
too, after its bytes (:attr:`BlackholeProxy.closed_by_clients` counts those closes).
"""

from __future__ import annotations

import socket
import threading
from collections import deque


class BlackholeProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._lock = threading.Lock()
        self._held_closes = 0
        self._sockets: list[socket.socket] = []
        self._closing = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, name="blackhole-accept", daemon=True).start()

    @property
    def closed_by_clients(self) -> int:
        """Client connections closed (by the client) while forwarding was held."""
        with self._lock:
            return self._held_closes

    def hold(self) -> None:
        """Stop forwarding; close nothing."""
        self._forwarding.clear()

    def resume(self) -> None:
        """Deliver what was held, and forward again."""
        self._forwarding.set()

    def close(self) -> None:
        self._closing.set()
        self._forwarding.set()
        self.listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            sock.close()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            self._pipe(client, upstream, from_client=True)
            self._pipe(upstream, client, from_client=False)

    def _pipe(self, source: socket.socket, target: socket.socket, *, from_client: bool) -> None:
        """Read ``source`` always (so a close is seen at once); write to ``target`` only while
        forwarding."""
        chunks: deque[bytes | None] = deque()  # None: the source closed
        ready = threading.Condition()

        def read() -> None:
            while True:
                try:
                    data = source.recv(65536)
                except OSError:
                    data = b""
                if not data and from_client and not self._forwarding.is_set():
                    with self._lock:
                        self._held_closes += 1
                with ready:
                    chunks.append(data or None)
                    ready.notify()
                if not data:
                    return

        def write() -> None:
            while True:
                with ready:
                    while not chunks:
                        ready.wait()
                    data = chunks.popleft()
                self._forwarding.wait()
                try:
                    if data is None:
                        target.shutdown(socket.SHUT_WR)
                        return
                    target.sendall(data)
                except OSError:
                    return

        for work in (read, write):
            threading.Thread(target=work, name="blackhole-pipe", daemon=True).start()
