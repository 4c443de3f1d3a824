"""The guarded URL fetcher: the address policy, per-hop checks, and the size, time and redirect
limits, against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import parse_qs

import httpx
import pytest

from darkroom.net import fetch as fetch_module
from darkroom.net import guard
from darkroom.net.fetch import FetchError, fetch
from darkroom.net.guard import AddressRefused, UnresolvableHost, refusal

T = TypeVar("T")

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
BIG = 5_000_000
CHUNK = 64 * 1024
REDIRECT_CODES = (301, 302, 303, 307, 308)


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


class Handler(BaseHTTPRequestHandler):
    server: TestServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.record(self.path, self.headers.get("Host", ""))
        path, _, query = self.path.partition("?")
        if path == "/ok.png":
            self.reply(200, PNG, {"Content-Type": "image/png"})
        elif path == "/missing":
            self.reply(404, b"not here")
        elif path == "/redirect":
            self.reply(302, b"", {"Location": parse_qs(query)["to"][0]})
        elif path.startswith("/chain/"):
            left = int(path.removeprefix("/chain/"))
            if left == 0:
                self.reply(200, PNG)
            else:
                code = REDIRECT_CODES[left % len(REDIRECT_CODES)]
                self.reply(code, b"", {"Location": f"/chain/{left - 1}"})
        elif path == "/big":
            self.send_response(200)
            self.send_header("Content-Length", str(BIG))
            self.end_headers()
            self.stream(BIG)
        elif path == "/stream":  # HTTP/1.0: no Content-Length, the body ends when we close
            self.send_response(200)
            self.end_headers()
            self.stream(BIG)
        elif path == "/chunked":
            self.protocol_version = "HTTP/1.1"
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(BIG // CHUNK):
                self.wfile.write(b"%x\r\n%s\r\n" % (CHUNK, b"x" * CHUNK))
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/slow":  # a byte every 50 ms: no single read ever waits long
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):
                if self.server.stopping.wait(0.05):
                    return
                self.wfile.write(b"x")
                self.wfile.flush()
        elif path == "/gzip":
            self.reply(200, b"\x1f\x8b", {"Content-Encoding": "gzip"})
        else:
            self.reply(400, b"unknown path")

    def reply(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def stream(self, total: int) -> None:
        for _ in range(total // CHUNK):
            self.wfile.write(b"x" * CHUNK)


class TestServer(ThreadingHTTPServer):
    """Serves ``Handler`` on a free loopback port; remembers (path, Host header) of each request."""

    __test__ = False
    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.port = cast(int, self.server_address[1])
        self.seen: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def record(self, path: str, host: str) -> None:
        with self.lock:
            self.seen.append((path, host))

    @property
    def paths(self) -> list[str]:
        with self.lock:
            return [path for path, _ in self.seen]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the fetcher hangs up mid-body on purpose

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()


@pytest.fixture(scope="module")
def module_server() -> Iterator[TestServer]:
    server = TestServer()
    yield server
    server.stop()


@pytest.fixture
def server(module_server: TestServer) -> TestServer:
    with module_server.lock:
        module_server.seen.clear()
    return module_server


def get(url: str, **kwargs: Any) -> bytes:
    options: dict[str, Any] = {"max_bytes": 1_000_000, "timeout": 5.0, **kwargs}
    return run(fetch(url, **options))


def fetch_error(url: str, **kwargs: Any) -> str:
    with pytest.raises(FetchError) as caught:
        get(url, **kwargs)
    message = caught.value.message
    assert "\n" not in message and "Traceback" not in message
    return message


# --- the policy ---------------------------------------------------------------------------------

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("169.254.0.1", "link-local"),
    ("fe80::1", "link-local"),
    ("fe80::1%1", "link-local"),
    ("febf:ffff::1", "link-local"),
    ("fc00::1", "private"),
    ("fd12:3456:789a::1", "private"),
    ("fec0::1", "site-local"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("::", "unspecified"),
    ("100.64.0.1", "shared address space"),
    ("100.127.255.254", "shared address space"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.254", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("192.0.0.1", "reserved"),
    ("192.0.0.9", "reserved"),
    ("192.88.99.1", "reserved"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.1", "documentation"),
    ("203.0.113.1", "documentation"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("100::1", "reserved"),
    ("2001::1", "reserved"),  # Teredo
    ("5f00::1", "reserved"),  # SRv6 SIDs: not global
    # IPv6 forms of refused IPv4 addresses: the embedded IPv4 decides
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:0.0.0.0", "unspecified"),
    ("::127.0.0.1", "loopback"),
    ("::10.0.0.1", "private"),
    ("::8.8.8.8", "reserved"),  # deprecated IPv4-compatible: refused even when public
    ("64:ff9b::127.0.0.1", "loopback"),
    ("64:ff9b::169.254.169.254", "link-local"),
    ("64:ff9b::192.168.0.1", "private"),
    ("64:ff9b:1::1", "private"),
    ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:a9fe:a9fe::", "link-local"),  # 6to4 of 169.254.169.254
    ("2002:c0a8:101::1", "private"),  # 6to4 of 192.168.1.1
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "100.63.255.255",  # just below 100.64/10
    "100.128.0.0",  # just above it
    "172.15.255.255",
    "172.32.0.0",
    "169.253.255.255",
    "223.255.255.255",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "64:ff9b::8.8.8.8",  # NAT64 of a public address
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_refused_addresses(address: str, reason: str) -> None:
    assert refusal(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def fake_dns(
    monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]
) -> Callable[[], list[str]]:
    """Patch the running loop's getaddrinfo to answer from ``answers``; returns the names asked."""
    asked: list[str] = []
    loop = asyncio.get_running_loop()

    async def getaddrinfo(host: str, port: int, **kwargs: Any) -> list[Any]:
        asked.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (
                socket.AF_INET6 if ":" in ip else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (ip, port, 0, 0) if ":" in ip else (ip, port),
            )
            for ip in answers[host]
        ]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return lambda: asked


def test_resolve_refuses_if_any_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        fake_dns(monkeypatch, {"mixed.test": ["8.8.8.8", "10.1.2.3"], "good.test": ["1.1.1.1"]})
        with pytest.raises(AddressRefused) as caught:
            await guard.resolve("mixed.test", 443, allow_private=False)
        assert caught.value.message == (
            "host 'mixed.test' resolves to a private address; only public addresses are allowed"
        )
        assert await guard.resolve("mixed.test", 443, allow_private=True) == "8.8.8.8"
        assert await guard.resolve("good.test", 443, allow_private=False) == "1.1.1.1"

    run(main())


def test_resolve_dns_failure_and_literals(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        asked = fake_dns(monkeypatch, {})
        with pytest.raises(UnresolvableHost) as caught:
            await guard.resolve("nowhere.test", 80, allow_private=True)
        assert isinstance(caught.value, AddressRefused)
        assert caught.value.message == "cannot resolve host 'nowhere.test'"
        assert await guard.resolve("8.8.8.8", 80, allow_private=False) == "8.8.8.8"
        assert await guard.resolve("2606:4700:4700::1111", 80, allow_private=False) == (
            "2606:4700:4700::1111"
        )
        with pytest.raises(AddressRefused, match=r"^address ::1 is a loopback address"):
            await guard.resolve("::1", 80, allow_private=False)
        assert asked() == ["nowhere.test"]  # literals never go to DNS

    run(main())


# --- refused before any request -----------------------------------------------------------------


def test_loopback_literal_is_refused_without_a_request(server: TestServer) -> None:
    message = fetch_error(server.url("/ok.png"))
    assert message == "address 127.0.0.1 is a loopback address; only public addresses are allowed"
    assert server.seen == []


def test_localhost_is_refused_after_dns(server: TestServer) -> None:
    message = fetch_error(server.url("/ok.png", host="localhost"))
    assert message.startswith("host 'localhost' resolves to ")
    assert "loopback" in message
    assert server.seen == []


@pytest.mark.parametrize(
    "host",
    ["[::1]", "0.0.0.0", "[::]", "[::ffff:127.0.0.1]", "127.1", "2130706433", "0x7f.0.0.1"],
)
def test_other_spellings_of_this_machine_are_refused(server: TestServer, host: str) -> None:
    message = fetch_error(server.url("/ok.png", host=host))
    # numeric forms that are not IP literals go to the resolver, which may or may not accept them
    assert "loopback" in message or "unspecified" in message or message.startswith("cannot resolve")
    assert server.seen == []


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/x.png",
        "gopher://127.0.0.1:70/_x",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        "http:///ok.png",
        "not a url",
        "",
    ],
)
def test_unsupported_urls(url: str) -> None:
    fetch_error(url, allow_private=True)


def test_userinfo_and_long_urls_are_refused(server: TestServer) -> None:
    for userinfo in ["user:pass@", "user@", ":pass@"]:
        message = fetch_error(
            server.url("/ok.png", host=f"{userinfo}127.0.0.1"), allow_private=True
        )
        assert message == "URLs with a user name or password are not allowed"
    long_url = server.url("/ok.png?" + "a" * 4096)
    assert fetch_error(long_url, allow_private=True) == "URL is longer than 4096 characters"
    assert server.seen == []


# --- fetching (allow_private=True, so loopback is allowed) -----------------------------------


def test_bytes_arrive_intact(server: TestServer) -> None:
    assert get(server.url("/ok.png"), allow_private=True) == PNG
    assert server.seen == [("/ok.png", f"127.0.0.1:{server.port}")]


def test_redirects_are_followed_up_to_the_limit(server: TestServer) -> None:
    assert get(server.url("/chain/3"), allow_private=True, max_redirects=3) == PNG
    assert server.paths == ["/chain/3", "/chain/2", "/chain/1", "/chain/0"]


def test_too_many_redirects(server: TestServer) -> None:
    message = fetch_error(server.url("/chain/4"), allow_private=True, max_redirects=3)
    assert message == "too many redirects (more than 3)"
    assert server.paths == ["/chain/4", "/chain/3", "/chain/2", "/chain/1"]
    assert fetch_error(server.url("/chain/1"), allow_private=True, max_redirects=0) == (
        "too many redirects (more than 0)"
    )


def test_size_limit_is_inclusive(server: TestServer) -> None:
    assert get(server.url("/ok.png"), allow_private=True, max_bytes=len(PNG)) == PNG
    message = fetch_error(server.url("/ok.png"), allow_private=True, max_bytes=len(PNG) - 1)
    assert message == f"the response from 127.0.0.1 is larger than {len(PNG) - 1} bytes"


@pytest.mark.parametrize("path", ["/big", "/stream", "/chunked"])
def test_oversized_bodies_are_cut_off(server: TestServer, path: str) -> None:
    message = fetch_error(server.url(path), allow_private=True, max_bytes=100_000)
    assert "larger than 100000 bytes" in message


def test_overall_timeout(server: TestServer) -> None:
    started = time.monotonic()
    message = fetch_error(server.url("/slow"), allow_private=True, timeout=0.5)
    elapsed = time.monotonic() - started
    # The overall limit: no single read of the drip (a byte every 50 ms, 50 s in all) waits.
    assert message == "timed out after 0.5 s fetching from 127.0.0.1"
    assert elapsed > 0.4  # not before it


def test_error_statuses(server: TestServer) -> None:
    assert fetch_error(server.url("/missing"), allow_private=True) == "127.0.0.1 answered HTTP 404"
    assert "compressed" in fetch_error(server.url("/gzip"), allow_private=True)


def test_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connecting is refused
        message = fetch_error(f"http://127.0.0.1:{port}/", allow_private=True)
    assert message == "could not connect to 127.0.0.1"


# --- every hop is checked -----------------------------------------------------------------------


@pytest.fixture
def public_test(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make "public.test" resolve, as if public, to the loopback server; the real policy still
    applies to every other name. Returns the hosts resolved, in order."""
    real_resolve = guard.resolve
    resolved: list[str] = []

    async def resolve(host: str, port: int, *, allow_private: bool) -> str:
        resolved.append(host)
        if host == "public.test":
            return "127.0.0.1"
        return await real_resolve(host, port, allow_private=allow_private)

    monkeypatch.setattr(guard, "resolve", resolve)
    return resolved


def test_stand_in_public_host_reaches_the_server(
    server: TestServer, public_test: list[str]
) -> None:
    target = server.url("/ok.png", host="public.test")
    assert get(server.url(f"/redirect?to={target}", host="public.test")) == PNG
    host = f"public.test:{server.port}"
    assert server.seen == [(f"/redirect?to={target}", host), ("/ok.png", host)]
    assert public_test == ["public.test", "public.test"]


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://127.0.0.1:{port}/ok.png", "loopback"),
        ("http://localhost:{port}/ok.png", "loopback"),
        ("http://[::ffff:7f00:1]:{port}/ok.png", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.1:{port}/ok.png", "private"),
    ],
)
def test_redirect_to_a_refused_address_is_refused(
    server: TestServer, public_test: list[str], target: str, reason: str
) -> None:
    target = target.format(port=server.port)
    message = fetch_error(server.url(f"/redirect?to={target}", host="public.test"))
    assert reason in message
    assert server.paths == [f"/redirect?to={target}"]  # the second hop never left


def test_redirect_to_another_scheme_is_refused(server: TestServer, public_test: list[str]) -> None:
    for target in ["file:///etc/passwd", "gopher://public.test/", "http://u:p@public.test/"]:
        fetch_error(server.url(f"/redirect?to={target}", host="public.test"))
    assert public_test == ["public.test"] * 3


# --- the connection goes to the vetted address --------------------------------------------------


def test_request_goes_to_the_vetted_ip_with_the_original_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = {"example.com": "93.184.215.14", "v6.example.com": "2606:4700:4700::1111"}
    sent: list[httpx.Request] = []

    async def resolve(host: str, port: int, *, allow_private: bool) -> str:
        return answers[host]

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, content=b"image")

    def client(timeout: float) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(answer))

    monkeypatch.setattr(guard, "resolve", resolve)
    monkeypatch.setattr(fetch_module, "guarded_client", client)
    assert get("https://example.com/a.png?x=1") == b"image"
    assert get("http://v6.example.com:8080/b.png") == b"image"
    assert get("https://v6.example.com:8443/c.png") == b"image"
    first, second, third = sent
    assert str(first.url) == "https://93.184.215.14/a.png?x=1"
    assert first.headers["Host"] == "example.com"
    assert first.extensions["sni_hostname"] == "example.com"
    assert str(second.url) == "http://[2606:4700:4700::1111]:8080/b.png"
    assert second.headers["Host"] == "v6.example.com:8080"
    assert "sni_hostname" not in second.extensions
    assert str(third.url) == "https://[2606:4700:4700::1111]:8443/c.png"
    assert third.headers["Host"] == "v6.example.com:8443"
    assert third.extensions["sni_hostname"] == "v6.example.com"


@pytest.fixture(scope="module")
def tls_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestServer, Path, list[str | None]]]:
    """An HTTPS server on loopback with a self-signed certificate for "public.test" only; also
    the certificate and the SNI names clients sent."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = ["openssl", "req", "-x509", "-nodes", "-days", "1", "-newkey", "ec"]
    command += ["-pkeyopt", "ec_paramgen_curve:prime256v1", "-subj", "/CN=public.test"]
    command += ["-addext", "subjectAltName=DNS:public.test", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        command,
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    names: list[str | None] = []

    def remember_sni(_sock: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        names.append(name)

    context.sni_callback = remember_sni
    server = TestServer(tls=context)
    yield server, cert, names
    server.stop()


def test_tls_checks_the_certificate_against_the_original_name(
    tls_server: tuple[TestServer, Path, list[str | None]],
    public_test: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, cert, sni = tls_server
    server.seen.clear()
    monkeypatch.setattr(
        fetch_module, "_tls_context", lambda: ssl.create_default_context(cafile=cert)
    )
    url = f"https://public.test:{server.port}/ok.png"
    assert get(url) == PNG
    assert server.seen == [("/ok.png", f"public.test:{server.port}")]
    assert sni == ["public.test"]
    # the same server under a name its certificate does not cover: verification fails
    message = fetch_error(f"https://127.0.0.1:{server.port}/ok.png", allow_private=True)
    assert message == "could not connect to 127.0.0.1"
    assert len(server.seen) == 1


def test_proxies_from_the_environment_are_ignored(
    server: TestServer, public_test: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]:
        monkeypatch.setenv(name, server.url(""))
    assert get(server.url("/ok.png", host="public.test")) == PNG
    assert server.paths == ["/ok.png"]  # through a proxy it would be the absolute URL
