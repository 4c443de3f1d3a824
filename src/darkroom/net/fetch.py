"""Download a user-supplied URL without letting it reach private addresses.

Every hop (redirects are followed by hand) is resolved once with ``guard.resolve`` and the
request goes to that vetted IP, with the original name in ``Host`` and in TLS SNI and certificate
checks, so DNS cannot answer differently between the check and the connection. Size and total
time are bounded; every failure is a ``FetchError`` whose message is safe to show to the caller.
"""

from __future__ import annotations

import asyncio
import functools
import ssl

import httpx

from darkroom.net import guard

MAX_URL_LENGTH = 4096
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}


class FetchError(Exception):
    """The URL could not be fetched; ``message`` is one line, fit for the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


async def fetch(
    url: str,
    *,
    max_bytes: int,
    timeout: float,
    allow_private: bool = False,
    max_redirects: int = 3,
) -> bytes:
    """The body of a 2xx answer for ``url``, at most ``max_bytes`` long, within ``timeout``
    seconds for all hops together. ``allow_private`` skips the address policy (tests, trusted
    deployments)."""
    current = parse_url(url)
    host = current.host
    try:
        async with asyncio.timeout(timeout):
            for _ in range(max_redirects + 1):
                host = current.host
                async with guarded_client(timeout) as client:
                    request = await vetted_request(client, current, allow_private)
                    response = await client.send(request, stream=True)
                    try:
                        if response.status_code not in REDIRECT_STATUSES:
                            return await _body(response, host, max_bytes)
                        current = _redirect_target(current, response)
                    finally:
                        await response.aclose()
    except (TimeoutError, httpx.TimeoutException):
        raise FetchError(f"timed out after {timeout:g} s fetching from {host}") from None
    except httpx.ConnectError:
        raise FetchError(f"could not connect to {host}") from None
    except httpx.TransportError:
        raise FetchError(f"the connection to {host} failed") from None
    except (httpx.HTTPError, httpx.InvalidURL):
        raise FetchError(f"fetching from {host} failed") from None
    except guard.AddressRefused as exc:
        raise FetchError(exc.message) from None
    raise FetchError(f"too many redirects (more than {max_redirects})")


def parse_url(url: str) -> httpx.URL:
    if len(url) > MAX_URL_LENGTH:
        raise FetchError(f"URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise FetchError("invalid URL") from None
    if parsed.scheme not in DEFAULT_PORTS:
        raise FetchError("only http and https URLs can be fetched")
    if not parsed.raw_host:
        raise FetchError("URL has no host")
    if parsed.userinfo:
        raise FetchError("URLs with a user name or password are not allowed")
    return parsed


async def vetted_request(
    client: httpx.AsyncClient,
    url: httpx.URL,
    allow_private: bool,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> httpx.Request:
    """A request for ``url`` aimed at the address ``guard.resolve`` approved (raises
    ``guard.AddressRefused``)."""
    name = url.raw_host.decode("ascii")
    port = DEFAULT_PORTS[url.scheme] if url.port is None else url.port
    address = await guard.resolve(name, port, allow_private=allow_private)
    sent = {"Host": url.netloc.decode("ascii"), "Accept-Encoding": "identity", **(headers or {})}
    extensions = {"sni_hostname": name.rstrip(".")} if url.scheme == "https" else {}
    return client.build_request(
        method, url.copy_with(host=address), headers=sent, content=content, extensions=extensions
    )


def _redirect_target(current: httpx.URL, response: httpx.Response) -> httpx.URL:
    location = response.headers.get("Location")
    if not location:
        raise FetchError(f"{current.host} answered HTTP {response.status_code} with no Location")
    try:
        target = current.join(location)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise FetchError(f"{current.host} redirected to an invalid URL") from None
    return parse_url(str(target))


async def _body(response: httpx.Response, host: str, max_bytes: int) -> bytes:
    if not response.is_success:
        raise FetchError(f"{host} answered HTTP {response.status_code}")
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding != "identity":
        raise FetchError(f"{host} sent a compressed body ({encoding}), which is not supported")
    too_big = FetchError(f"the response from {host} is larger than {max_bytes} bytes")
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise too_big
    body = bytearray()
    async for chunk in response.aiter_bytes():  # identity encoding: the bytes as sent
        body += chunk
        if len(body) > max_bytes:
            raise too_big
    return bytes(body)


def guarded_client(timeout: float) -> httpx.AsyncClient:
    """A fresh client per hop: no connection or cookie carries over to another host.

    ``trust_env=False``: a proxy from the environment would connect by name and skip the check.
    """
    return httpx.AsyncClient(
        trust_env=False, follow_redirects=False, verify=_tls_context(), timeout=timeout
    )


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()
