"""Running flows (see :mod:`darkroom.sdk.flow`): the only place that does I/O, once blocking
(:class:`SyncTransport`) and once with ``await`` (:class:`AsyncTransport`). What a request looks
like and what an answer means is shared by both through :class:`Transport`."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import time
from collections.abc import Iterator
from typing import Any, TypeVar
from urllib.parse import urljoin

import httpx

from darkroom import __version__
from darkroom.sdk.calls import Call
from darkroom.sdk.errors import APIConnectionError, APITimeoutError, DarkroomError
from darkroom.sdk.flow import Effect, Fetch, Flow, Reply, Send, Sleep
from darkroom.sdk.retry import RetryPolicy

T = TypeVar("T")

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
NO_KEY = "no API key: pass token= (--api-key) or set DARKROOM_API_KEY"


class Transport:
    """Configuration and the parts of each request that do not depend on sync or async."""

    def __init__(
        self,
        *,
        token: str | None,
        base_url: str | None,
        timeout: float | None,
        max_retries: int,
        poll_interval: float | None,
    ) -> None:
        self.token = token if token is not None else os.environ.get("DARKROOM_API_KEY") or None
        url = base_url or os.environ.get("DARKROOM_BASE_URL") or DEFAULT_BASE_URL
        self.base_url = url.rstrip("/") + "/"
        self.timeout = timeout
        self.policy = RetryPolicy(max_retries=max_retries)
        interval = poll_interval
        if interval is None:  # the published SDK's variable, for a server without long polls
            interval = float(os.environ.get("MAGIC_HOUR_POLL_INTERVAL", "0.5"))
        self.poll_interval = interval

    def _timeout(self, seconds: float | None) -> httpx.Timeout:
        total = self.timeout if seconds is None else seconds
        return httpx.Timeout(total, connect=None if total is None else min(10.0, total))

    def build(self, http: httpx.Client | httpx.AsyncClient, effect: Send) -> httpx.Request:
        call: Call[Any] = effect.call
        headers = {"User-Agent": f"darkroom-python/{__version__}", **call.headers}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        timeout = effect.timeout if effect.timeout is not None else call.timeout
        return http.build_request(
            call.method,
            urljoin(self.base_url, call.path.lstrip("/")),
            params=dict(call.params) or None,
            json=call.json,
            headers=headers,
            timeout=self._timeout(timeout),
        )

    def fetch_request(self, http: httpx.Client | httpx.AsyncClient, fetch: Fetch) -> httpx.Request:
        # Download links are signed: never send the API key, wherever they point.
        return http.build_request(
            "GET",
            urljoin(self.base_url, fetch.url),
            headers={"User-Agent": f"darkroom-python/{__version__}"},
            timeout=self._timeout(fetch.timeout),
        )

    def reply(self, response: httpx.Response) -> Reply:
        headers = _headers(response)
        body: Any = None
        if response.content:
            try:
                body = response.json()
            except ValueError:
                body = response.text
        if response.status_code == 401 and not self.token and isinstance(body, dict):
            body = {**body, "message": f"{body.get('message', 'Unauthorized')} ({NO_KEY})"}
        return Reply(response.status_code, headers, body)

    def download_reply(self, response: httpx.Response) -> Reply:
        return Reply(response.status_code, _headers(response), None)


def _headers(response: httpx.Response) -> dict[str, str]:
    return {key.lower(): value for key, value in response.headers.items()}


@contextlib.contextmanager
def connection_errors(url: str) -> Iterator[None]:
    """httpx's transport failures as the SDK's exceptions."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise APITimeoutError(f"request to {url} timed out ({type(exc).__name__})") from exc
    except (httpx.TransportError, httpx.StreamError) as exc:
        raise APIConnectionError(f"could not reach {url}: {exc or type(exc).__name__}") from exc


class Stepper:
    """Drives a flow: iterating gives its effects; set ``result`` (or ``error``) after each.
    Once the iteration ends, ``value`` is what the flow returned."""

    def __init__(self, flow: Flow[Any]) -> None:
        self.flow = flow
        self.result: Any = None
        self.error: DarkroomError | None = None
        self.value: Any = None

    def __iter__(self) -> Stepper:
        return self

    def __next__(self) -> Effect:
        result, error = self.result, self.error
        self.result, self.error = None, None
        try:
            return self.flow.throw(error) if error is not None else self.flow.send(result)
        except StopIteration as done:
            self.value = done.value
            raise StopIteration from None


class SyncTransport(Transport):
    def __init__(self, *, http: httpx.Client | None = None, **config: Any) -> None:
        super().__init__(**config)
        self.http = http or httpx.Client(follow_redirects=False)
        self.owns_http = http is None

    def run(self, flow: Flow[T]) -> T:
        steps = Stepper(flow)
        for effect in steps:
            try:
                steps.result = self.perform(effect)
            except DarkroomError as exc:
                steps.error = exc
        value: T = steps.value
        return value

    def perform(self, effect: Effect) -> Any:
        if isinstance(effect, Send):
            request = self.build(self.http, effect)
            with connection_errors(str(request.url.copy_with(query=None))):
                return self.reply(self.http.send(request))
        if isinstance(effect, Fetch):
            request = self.fetch_request(self.http, effect)
            with connection_errors(effect.url):
                response = self.http.send(request, stream=True, follow_redirects=True)
                try:
                    if not response.is_success:
                        response.read()
                        return self.reply(response)
                    for chunk in response.iter_bytes():
                        effect.sink.write(chunk)
                finally:
                    response.close()
                return self.download_reply(response)
        if isinstance(effect, Sleep):
            time.sleep(effect.seconds)
            return None
        return effect.callback(effect.progress)

    def close(self) -> None:
        if self.owns_http:
            self.http.close()


class AsyncTransport(Transport):
    def __init__(self, *, http: httpx.AsyncClient | None = None, **config: Any) -> None:
        super().__init__(**config)
        self.http = http or httpx.AsyncClient(follow_redirects=False)
        self.owns_http = http is None

    async def run(self, flow: Flow[T]) -> T:
        steps = Stepper(flow)
        for effect in steps:
            try:
                steps.result = await self.perform(effect)
            except DarkroomError as exc:
                steps.error = exc
        value: T = steps.value
        return value

    async def perform(self, effect: Effect) -> Any:
        if isinstance(effect, Send):
            request = self.build(self.http, effect)
            with connection_errors(str(request.url.copy_with(query=None))):
                return self.reply(await self.http.send(request))
        if isinstance(effect, Fetch):
            request = self.fetch_request(self.http, effect)
            with connection_errors(effect.url):
                response = await self.http.send(request, stream=True, follow_redirects=True)
                try:
                    if not response.is_success:
                        await response.aread()
                        return self.reply(response)
                    async for chunk in response.aiter_bytes():
                        effect.sink.write(chunk)
                finally:
                    await response.aclose()
                return self.download_reply(response)
        if isinstance(effect, Sleep):
            await asyncio.sleep(effect.seconds)
            return None
        outcome = effect.callback(effect.progress)
        if inspect.isawaitable(outcome):
            await outcome
        return None

    async def close(self) -> None:
        if self.owns_http:
            await self.http.aclose()
