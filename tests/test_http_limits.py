"""Slow and greedy clients (issue 16): half-sent request heads are closed after the head timeout
while /healthz stays fast, connections beyond the cap are answered 503, and bodies over their
route's limit are answered 413 while being read, before they are held in memory or spooled to
disk, and without a charge."""

from __future__ import annotations

import http.client
import os
import selectors
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from darkroom.api.server import raise_descriptor_limit
from tests.conftest import Account, LiveServer, ServerFactory
from tests.waiting import wait_until

MIB = 1024 * 1024
HELD = 1000  # half-head connections
HEAD_TIMEOUT = 4.0  # seconds; short, to keep the test bounded (the default is 10)
CREATE = "/v1/ai-image-generator"
REQUEST = b'{"image_count": 1, "aspect_ratio": "1:1", "style": {"prompt": "a lighthouse"}}'


def connections(server: LiveServer) -> int:
    """The connections the server holds now."""
    return len(server.server.server_state.connections)


def healthz_ms(port: int) -> float:
    """One /healthz on a new connection, in milliseconds."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        assert response.status == 200
        response.read()
    finally:
        conn.close()
    return (time.perf_counter() - started) * 1000


PROTOCOLS = pytest.mark.parametrize("http", ["auto", "h11"])  # httptools, and uvicorn's other


@PROTOCOLS
def test_half_sent_heads_are_closed_and_healthz_stays_fast(
    server_factory: ServerFactory, http: str
) -> None:
    if raise_descriptor_limit(2 * HELD + 200) < 2 * HELD + 200:
        pytest.skip("the open files limit is too low for both ends of the connections")
    server = server_factory(http_head_timeout_seconds=HEAD_TIMEOUT, http=http)
    # The timeout is on the head only: a head sent in pieces within it is answered.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        time.sleep(0.5)  # a slow but honest client
        sock.sendall(b"Host: 127.0.0.1\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    wait_until(lambda: connections(server) == 0, "that connection to be let go", timeout=10)

    held: list[tuple[socket.socket, float]] = []
    try:
        for _ in range(HELD):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            held.append((sock, time.monotonic()))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        wait_until(
            lambda: connections(server) >= HELD, "the server to hold them", timeout=HEAD_TIMEOUT
        )
        # /healthz answers on new connections while the half-sent heads are all held (each
        # within healthz_ms's 10 s timeout; how fast: benchmarks/api_overhead.py).
        latencies: list[float] = []
        peak = 0
        first_closes = held[0][1] + HEAD_TIMEOUT
        while len(latencies) < 40 and time.monotonic() < first_closes - 0.5:  # all are held
            latencies.append(healthz_ms(server.port))
            peak = max(peak, connections(server))
        assert latencies and peak >= HELD
        latencies.sort()
        median = statistics.median(latencies)
        p90 = latencies[int(len(latencies) * 0.9) - 1]
        print(
            f"\n{peak} connections held; /healthz over {len(latencies)} new connections: "
            f"median {median:.1f} ms, p90 {p90:.1f} ms, max {latencies[-1]:.1f} ms"
        )

        # Every half-sent head is closed by the server: the client sees the end of the stream,
        # not before the head timeout, and within it plus a margin.
        closed_at: dict[socket.socket, float] = {}
        selector = selectors.DefaultSelector()
        for sock, _opened in held:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + HEAD_TIMEOUT + 20
        while len(closed_at) < HELD and time.monotonic() < deadline:
            for key, _events in selector.select(timeout=0.5):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(1024)
                except (BlockingIOError, InterruptedError):
                    continue
                except ConnectionError:
                    data = b""
                assert data == b"", "no answer is sent to a head that never completed"
                closed_at[sock] = time.monotonic()
                selector.unregister(sock)
        selector.close()
        assert len(closed_at) == HELD, f"{HELD - len(closed_at)} half-heads still open"
        early = [opened for sock, opened in held if closed_at[sock] < opened + HEAD_TIMEOUT - 0.05]
        assert not early, f"{len(early)} closed before the head timeout"
        last = max(closed_at[sock] - opened for sock, opened in held)
        print(f"all {HELD} closed by the server; the last {last:.1f} s after it opened")
        wait_until(lambda: connections(server) == 0, "the server to let them go", timeout=10)
        healthz_ms(server.port)  # and it goes on serving
    finally:
        for sock, _opened in held:
            sock.close()


@PROTOCOLS
def test_connections_beyond_the_cap_get_503(server_factory: ServerFactory, http: str) -> None:
    server = server_factory(http_max_connections=20, http=http)
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(20)]
    try:
        wait_until(
            lambda: connections(server) == 20, "the server to hold 20 connections", timeout=10
        )
        with httpx.Client(base_url=server.url, timeout=10) as client:
            answer = client.get("/healthz")
            assert answer.status_code == 503
            assert answer.headers["retry-after"] == "1"
            assert "connections" in answer.json()["message"]
            openai = client.get("/v1/models")  # the OpenAI dialect's shape
            assert openai.status_code == 503
            assert openai.json()["error"]["code"] == "connections_full"
        held.pop().close()
        wait_until(lambda: connections(server) <= 19, "a connection to be let go", timeout=10)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.get("/healthz").status_code == 200
    finally:
        for sock in held:
            sock.close()


# Bodies


def padded_json(size: int, chunk: int = MIB) -> Iterator[bytes]:
    """A valid create request of exactly ``size`` bytes (whitespace after it), in chunks."""
    yield REQUEST
    left = size - len(REQUEST)
    block = b" " * chunk
    while left > 0:
        yield block[: min(chunk, left)]
        left -= chunk


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class Sampler:
    """Samples a value in a thread while a block runs; ``peak`` is the largest seen."""

    def __init__(self, sample: Callable[[], float]) -> None:
        self.sample = sample
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            time.sleep(0.005)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.sample())


def post(server: LiveServer, account: Account | None, path: str, **kwargs: Any) -> httpx.Response:
    with server.client(account) as client:
        return client.post(path, **kwargs)


def seconds(response: httpx.Response) -> float:
    return response.elapsed.total_seconds()


def test_json_bodies_over_the_limit_get_413_without_being_read(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    account = server.account(credits=1000)
    limit = server.settings.http_body_max_bytes
    assert limit == MIB  # the default
    balance = server.balance(account)
    size = 200 * 1000 * 1000  # the attack as filed: 200 MB

    def chunked() -> httpx.Response:
        return post(server, account, CREATE, content=padded_json(size))

    def declared() -> httpx.Response:
        headers = {"Content-Type": "application/json", "Content-Length": str(size)}
        return post(server, account, CREATE, content=padded_json(size), headers=headers)

    before = rss_mib()
    answers: list[httpx.Response] = []
    with Sampler(rss_mib) as rss:
        answers.append(chunked())
        answers.append(declared())
        threads = [threading.Thread(target=lambda: answers.append(chunked())) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    print(
        f"\nRSS before {before:.0f} MiB, peak {rss.peak:.0f} MiB during 6 bodies of 200 MB "
        f"(4 at once); slowest answer {max(seconds(a) for a in answers):.2f} s"
    )
    assert len(answers) == 6
    for answer in answers:
        assert answer.status_code == 413, answer.text
        assert "larger than 1048576 bytes" in answer.json()["message"]
    assert rss.peak - before < 100, "the bodies were held in memory"
    assert server.balance(account) == balance

    # The limit itself is allowed, chunked or declared; one byte more is not.
    for headers in ({}, {"Content-Length": str(limit)}):
        ok = post(server, account, CREATE, content=padded_json(limit), headers=headers)
        assert ok.status_code == 200, ok.text
    assert server.balance(account) < balance
    balance = server.balance(account)
    for headers in ({}, {"Content-Length": str(limit + 1)}):
        over = post(server, account, CREATE, content=padded_json(limit + 1), headers=headers)
        assert over.status_code == 413, over.text
    assert server.balance(account) == balance


def multipart(size: int, boundary: str = "darkroom-test-boundary") -> tuple[Iterator[bytes], int]:
    """An OpenAI edit whose image is ``size`` bytes: its chunks and its length."""
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nmake it dusk\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def chunks() -> Iterator[bytes]:
        yield head
        block = b"\x89" * MIB
        left = size
        while left > 0:
            yield block[: min(MIB, left)]
            left -= MIB
        yield tail

    return chunks(), len(head) + size + len(tail)


def spooled_bytes(spool: Path) -> int:
    """The largest file this process holds open in ``spool`` (the multipart parser's temporary
    files are unlinked at once, so they are found through /proc/self/fd)."""
    largest = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(spool)):
                largest = max(largest, os.stat(f"/proc/self/fd/{fd}").st_size)
        except OSError:
            continue
    return largest


def test_multipart_edits_over_the_limit_get_413_before_any_spooling(
    server_factory: ServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    server = server_factory()
    account = server.account(credits=1000)
    balance = server.balance(account)
    limit = server.settings.source_body_max_bytes
    assert server.settings.source_max_bytes < limit < 30 * MIB  # one 20 MB source, in base64
    content_type = {"Content-Type": "multipart/form-data; boundary=darkroom-test-boundary"}
    size = 300 * 1000 * 1000  # the attack as filed: 300 MB

    before = rss_mib()
    with Sampler(lambda: spooled_bytes(spool)) as declared_spool, Sampler(rss_mib) as rss:
        chunks, length = multipart(size)
        headers = {**content_type, "Content-Length": str(length)}
        declared = post(server, account, "/v1/images/edits", content=chunks, headers=headers)
    assert declared.status_code == 413, declared.text
    assert declared.json()["error"]["code"] == "body_too_large"  # the OpenAI dialect's shape
    assert declared_spool.peak == 0, "nothing may be written for a body known to be too large"

    with Sampler(lambda: spooled_bytes(spool)) as chunked_spool:
        chunks, _length = multipart(size)
        chunked = post(server, account, "/v1/images/edits", content=chunks, headers=content_type)
    assert chunked.status_code == 413, chunked.text
    print(
        f"\n300 MB edit: declared length refused at once ({seconds(declared):.2f} s, nothing "
        f"spooled), chunked refused after {chunked_spool.peak / MIB:.1f} MiB spooled "
        f"({seconds(chunked):.2f} s; limit {limit / MIB:.1f} MiB); "
        f"RSS before {before:.0f} MiB, peak {rss.peak:.0f} MiB"
    )
    assert chunked_spool.peak <= limit
    assert rss.peak - before < 100
    assert server.balance(account) == balance
    wait_until(lambda: spooled_bytes(spool) == 0, "the spooled part to be let go", timeout=10)


def test_a_head_over_64_kib_is_refused(server_factory: ServerFactory) -> None:
    """httptools, which has no limit of its own (h11 has one on a head still incomplete)."""
    server = server_factory()
    answer = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            for _ in range(80):  # 80 headers of 1 KiB
                sock.sendall(b"X-Padding: " + b"a" * 1024 + b"\r\n")
            sock.sendall(b"\r\n")
            while chunk := sock.recv(4096):  # the server closes the connection after its answer
                answer += chunk
        except (ConnectionResetError, BrokenPipeError):
            # The server answered 400 and closed while headers were still coming: the kernel
            # then resets the connection, and may drop the answer before it is read.
            answer = answer or b"reset"
    assert answer.startswith(b"HTTP/1.1 400") or answer == b"reset", answer[:200]
    healthz_ms(server.port)  # and it goes on serving


def read_answer(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic() - started


def test_a_body_that_stalls_gets_408_while_a_long_poll_waits_on(
    server_factory: ServerFactory,
) -> None:
    stall = 1.0
    server = server_factory(http_body_timeout_seconds=stall, workers=0)  # projects stay queued
    account = server.account(credits=1000)
    balance = server.balance(account)
    head = (
        f"POST {CREATE} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {account.key}\r\n"
        "Content-Type: application/json\r\n"
    )
    # A declared body of which a few bytes come, then nothing; and a chunked one that stops.
    for framing, first in (
        (f"Content-Length: {len(REQUEST)}\r\n\r\n", REQUEST[:10]),
        ("Transfer-Encoding: chunked\r\n\r\n", b"a\r\n" + REQUEST[:10] + b"\r\n"),
    ):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(head.encode() + framing.encode() + first)
            answer, took = read_answer(sock, timeout=stall + 10)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"body stalled" in answer and b"connection: close" in answer.lower()
        assert took >= stall  # not before the stall timeout (nor after the read's own)
    assert server.balance(account) == balance

    # A body that arrives slowly but keeps coming is read; once it is in, a long poll may wait
    # far longer than the stall timeout for its project.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode() + f"Content-Length: {len(REQUEST)}\r\n\r\n".encode())
        for piece in (REQUEST[:30], REQUEST[30:60], REQUEST[60:]):
            time.sleep(stall / 2)  # a slow but live client
            sock.sendall(piece)
        sock.settimeout(10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    assert server.balance(account) < balance
    with server.client(account) as client:
        project = client.post(CREATE, content=REQUEST, headers={"Content-Type": "application/json"})
        assert project.status_code == 200, project.text
        wait = 2 * stall + 1
        waited = client.get(f"/v1/image-projects/{project.json()['id']}", params={"wait": wait})
    assert waited.status_code == 200, waited.text
    assert waited.json()["status"] == "queued" and seconds(waited) >= wait - 0.5
