"""What every vendor module provides, and what they share: the calls, retries, timeouts and
cancellation around a vendor's image API, and the checks on what comes back.

A vendor module is small (as LiteLLM's image providers are): it maps a render to one call
(:meth:`Vendor.call`: URL, headers, JSON or multipart body, for ``n`` images), says how many
images one call can make (:attr:`Vendor.max_per_call`), and reads an answer
(:meth:`Vendor.answer`: images as bytes or URLs, and the vendor's usage) or an error body
(:meth:`Vendor.error`). :class:`ProviderBackend` does the rest for all of them:

- the calls a project needs (``count`` images, ``max_per_call`` at a time) run at once;
- a 429 or 5xx is retried up to ``max_retries`` times, after ``Retry-After`` when the vendor
  gives one (else 1, 2, 4 s... with jitter), all within ``timeout_seconds`` for the whole
  render; other errors end the render at once with the vendor's message;
- the render stops within a tenth of a second of a cancel, while a call is in flight;
- images given as URLs are downloaded (the vendors' URLs expire within hours); every image must
  decode, and be between 64 and 8192 pixels a side; it is then fitted to the project's size
  (scaled to cover, centre-cropped) and returned as PNG;
- the key goes in a header only, and is removed from any message that might echo it.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from PIL import Image, ImageOps

from darkroom.engine.base import BackendError, RenderRequest
from darkroom.engine.upstream import UpstreamEntry

log = logging.getLogger("darkroom.providers")

MIN_EDGE = 64
MAX_EDGE = 8192
MAX_IMAGE_BYTES = 50 * 1024 * 1024
CANCEL_CHECK_SECONDS = 0.1
# Calls in flight at once, over all the projects a process renders through vendors.
MAX_CALLS = 64


@dataclass(frozen=True)
class Call:
    """One HTTP request to the vendor."""

    url: str
    headers: dict[str, str]
    json: dict[str, Any] | None = None
    data: dict[str, Any] | None = None  # multipart form fields
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None


@dataclass
class Answer:
    """What one call gave: images (bytes, or URLs to download) and the vendor's usage."""

    images: list[bytes | str] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    refusal: str | None = None  # the vendor answered, but with no image and this reason


class Vendor(Protocol):
    name: str  # the backend name in the catalog: openai, gemini, seedream
    title: str  # for messages: "OpenAI"
    max_per_call: int

    def call(
        self, request: RenderRequest, upstream: UpstreamEntry, key: str, n: int, first: int
    ) -> Call:
        """The request for images ``first`` .. ``first + n - 1`` of the project."""
        ...

    def answer(self, body: Any) -> Answer: ...

    def error(self, body: Any) -> str:
        """The vendor's message in an error body ("" when it has none)."""
        ...

    def retry_delay(self, body: Any) -> float | None:
        """How long an error body says to wait before retrying, where the vendor says it there
        rather than in ``Retry-After`` (None: it does not)."""
        ...


class ProviderBackend:
    """A backend that renders through a vendor's API, for every model the catalog puts on it."""

    edits = True

    def __init__(
        self,
        vendor: Vendor,
        upstreams: Mapping[str, UpstreamEntry],
        environ: Mapping[str, str],
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.vendor = vendor
        self.name = vendor.name
        self.upstreams = dict(upstreams)
        self._keys = {
            model: environ.get(upstream.api_key_env, "").strip()
            for model, upstream in self.upstreams.items()
        }
        self._sleep = sleep
        self._clients: dict[str, httpx.Client] = {}  # one per upstream base URL
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(MAX_CALLS, thread_name_prefix=f"darkroom-{self.name}")

    def unavailable(self, model: str) -> str | None:
        """Why this backend cannot serve ``model`` (None when it can)."""
        upstream = self.upstreams.get(model)
        if upstream is None:
            return f"no upstream is configured for {model}"
        if not self._keys.get(model):
            return f"{upstream.api_key_env} is not set"
        return None

    def models(self) -> dict[str, str]:
        """Each model on this backend: "ready", or why it cannot be served."""
        return {model: self.unavailable(model) or "ready" for model in sorted(self.upstreams)}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for client in self._clients.values():
            client.close()

    # -- a render ---------------------------------------------------------------------------------

    def render(self, request: RenderRequest) -> list[bytes]:
        upstream = self.upstreams.get(request.model)
        reason = self.unavailable(request.model)
        if upstream is None or reason is not None:
            raise BackendError("model_unavailable", f"{request.model} cannot run here: {reason}")
        key = self._keys[request.model]
        deadline = time.monotonic() + upstream.timeout_seconds
        per_call = max(1, self.vendor.max_per_call)
        batches = [
            (first, min(per_call, request.count - first))
            for first in range(0, request.count, per_call)
        ]
        futures = [
            self._pool.submit(self._images, request, upstream, key, n, first, deadline)
            for first, n in batches
        ]
        try:
            results = [self._wait(future, request, upstream, deadline) for future in futures]
        finally:
            for future in futures:
                future.cancel()
        images = [image for batch, _ in results for image in batch]
        if request.usage is not None:
            total: dict[str, int] = {"images": len(images)}
            for _, usage in results:
                for name, value in usage.items():
                    total[name] = total.get(name, 0) + value
            request.usage(total)
        if len(images) < request.count:
            raise BackendError(
                "upstream_error",
                f"{self.vendor.title} returned {len(images)} images instead of {request.count}",
            )
        return images[: request.count]

    def _images(
        self,
        request: RenderRequest,
        upstream: UpstreamEntry,
        key: str,
        n: int,
        first: int,
        deadline: float,
    ) -> tuple[list[bytes], dict[str, int]]:
        """One call, retried as it may be, and its images fetched, checked and fitted (on this
        pool thread, as each answer comes); its usage."""
        call = self.vendor.call(request, upstream, key, n, first)
        answer = self._send(call, request, upstream, key, deadline)
        if not answer.images:
            reason = answer.refusal or "no image in the answer"
            raise BackendError("upstream_refused", f"{self.vendor.title}: {_clean(reason, key)}")
        size = (request.width, request.height)
        images = [self._image(item, upstream, deadline, size) for item in answer.images]
        return images, answer.usage

    def _send(
        self, call: Call, request: RenderRequest, upstream: UpstreamEntry, key: str, deadline: float
    ) -> Answer:
        client = self._client(upstream)
        for attempt in range(upstream.max_retries + 1):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                response = client.post(
                    call.url,
                    headers=call.headers,
                    json=call.json,
                    data=call.data,
                    files=call.files,
                    timeout=left,
                )
            except httpx.TimeoutException:
                break
            except httpx.HTTPError as exc:
                if attempt == upstream.max_retries:
                    raise BackendError(
                        "upstream_unreachable",
                        f"{self.vendor.title} could not be reached at {_host(upstream)}"
                        f" ({type(exc).__name__})",
                    ) from None
                self._pause(_backoff(attempt), request, deadline)
                continue
            if response.status_code < 300:
                return self.vendor.answer(_json(response, self.vendor.title))
            message = self._message(response, key)
            if response.status_code in (429, 500, 502, 503, 504) and (
                attempt < upstream.max_retries
            ):
                wait = _retry_after(response) or self._hinted(response) or _backoff(attempt)
                log.info(
                    "%s answered %d; retrying in %.1f s",
                    self.vendor.title,
                    response.status_code,
                    wait,
                )
                self._pause(wait, request, deadline)
                continue
            raise BackendError(_code(response.status_code), message)
        raise BackendError(
            "upstream_timeout",
            f"{self.vendor.title} did not answer within {upstream.timeout_seconds:g} seconds",
        )

    def _hinted(self, response: httpx.Response) -> float | None:
        try:
            delay = self.vendor.retry_delay(response.json())
        except ValueError:
            return None
        return None if delay is None else min(max(delay, 0.0), 60.0)

    def _message(self, response: httpx.Response, key: str) -> str:
        try:
            detail = self.vendor.error(response.json())
        except ValueError:
            detail = ""
        detail = _clean(detail or response.reason_phrase or "error", key)
        return f"{self.vendor.title} answered {response.status_code}: {detail}"

    def _pause(self, seconds: float, request: RenderRequest, deadline: float) -> None:
        """Wait before a retry, stopping at a cancel; past the deadline there is no retry."""
        end = time.monotonic() + seconds
        if end >= deadline:
            raise BackendError(
                "upstream_timeout",
                f"{self.vendor.title} kept refusing (rate limited or failing) until the timeout",
            )
        while (left := end - time.monotonic()) > 0:
            request.check_canceled()
            self._sleep(min(left, CANCEL_CHECK_SECONDS))

    def _wait(
        self,
        future: Future[tuple[list[bytes], dict[str, int]]],
        request: RenderRequest,
        upstream: UpstreamEntry,
        deadline: float,
    ) -> tuple[list[bytes], dict[str, int]]:
        """The call's images, checking for a cancel while it is in flight."""
        while True:
            request.check_canceled()
            if time.monotonic() > deadline + 1:
                raise BackendError(
                    "upstream_timeout",
                    f"{self.vendor.title} did not answer within {upstream.timeout_seconds:g} "
                    "seconds",
                )
            try:
                return future.result(timeout=CANCEL_CHECK_SECONDS)
            except TimeoutError:
                continue

    def _image(
        self, item: bytes | str, upstream: UpstreamEntry, deadline: float, size: tuple[int, int]
    ) -> bytes:
        """The image as the project stores it: a PNG of its size (the vendor's own bytes when
        they are that already: no re-encoding)."""
        data = item if isinstance(item, bytes) else self._download(item, upstream, deadline)
        image = _checked(data, self.vendor.title)
        if image.format == "PNG" and image.size == size:
            return data
        return _fit(image, *size)

    def _download(self, url: str, upstream: UpstreamEntry, deadline: float) -> bytes:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BackendError("upstream_timeout", f"{self.vendor.title}'s image came too late")
        try:
            with self._client(upstream).stream("GET", url, timeout=left) as response:
                if response.status_code != 200:
                    raise BackendError(
                        "upstream_error",
                        f"{self.vendor.title}'s image URL answered {response.status_code}",
                    )
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > MAX_IMAGE_BYTES:
                        raise BackendError("upstream_error", f"{self.vendor.title}: image too big")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise BackendError(
                "upstream_error",
                f"{self.vendor.title}'s image could not be downloaded ({type(exc).__name__})",
            ) from None

    def _client(self, upstream: UpstreamEntry) -> httpx.Client:
        with self._lock:
            client = self._clients.get(upstream.base_url)
            if client is None:
                limits = httpx.Limits(max_connections=MAX_CALLS, max_keepalive_connections=16)
                client = httpx.Client(limits=limits, follow_redirects=True)
                self._clients[upstream.base_url] = client
            return client


def _json(response: httpx.Response, title: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise BackendError("upstream_error", f"{title} answered with something not JSON") from None


def _code(status: int) -> str:
    if status in (401, 403):
        return "upstream_auth"
    if status == 429:
        return "upstream_rate_limited"
    if 400 <= status < 500:
        return "upstream_rejected"
    return "upstream_error"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return min(max(float(value), 0.0), 60.0)
    except ValueError:
        return None


def _backoff(attempt: int) -> float:
    return float(2**attempt) * (0.5 + random.random() / 2)  # jitter


def _host(upstream: UpstreamEntry) -> str:
    return urlsplit(upstream.base_url).netloc


def _clean(message: str, key: str) -> str:
    """One line, short, and never the key."""
    text = " ".join(message.split())[:500]
    return text.replace(key, "***") if key else text


def decode_base64(data: str, title: str) -> bytes:
    """An image given in base64 (plain, or a ``data:`` URL)."""
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BackendError("upstream_error", f"{title} sent an image that is not base64") from None


def _checked(data: bytes, title: str) -> Image.Image:
    """A real image of a sane size, or :class:`BackendError`."""
    if len(data) > MAX_IMAGE_BYTES:
        raise BackendError("upstream_error", f"{title} sent an image of over 50 MB")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            probe.verify()
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception:
        raise BackendError(
            "upstream_error", f"{title} sent something that is not an image"
        ) from None
    width, height = image.size
    if min(width, height) < MIN_EDGE or max(width, height) > MAX_EDGE:
        raise BackendError("upstream_error", f"{title} sent an image of {width}x{height}")
    return image


def _fit(image: Image.Image, width: int, height: int) -> bytes:
    """The image at the project's size (scaled to cover it, centre-cropped), as PNG."""
    mode = "RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB"
    fitted = image.convert(mode)
    if fitted.size != (width, height):
        fitted = ImageOps.fit(fitted, (width, height), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    fitted.save(out, format="PNG")
    return out.getvalue()


def png_base64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def aspect(width: int, height: int, choices: tuple[str, ...]) -> str:
    """The ``"W:H"`` among ``choices`` closest to the size's shape."""
    target = math.log(width / height)
    return min(choices, key=lambda c: abs(math.log(_ratio(c)) - target))


def _ratio(name: str) -> float:
    w, _, h = name.partition(":")
    return int(w) / int(h)


def data_images(body: Any, title: str) -> list[bytes | str]:
    """The images of an OpenAI-style answer, ``{"data": [{"b64_json": ...} or {"url": ...}]}``
    (OpenAI, and ModelArk which follows it)."""
    items = (body.get("data") or []) if isinstance(body, dict) else []
    images: list[bytes | str] = []
    for item in items:
        if isinstance(item, dict) and item.get("b64_json"):
            images.append(decode_base64(str(item["b64_json"]), title))
        elif isinstance(item, dict) and item.get("url"):
            images.append(str(item["url"]))
    return images


def counts(usage: Any, names: Mapping[str, str]) -> dict[str, int]:
    """The vendor's usage figures that ``names`` maps (vendor's name → darkroom's)."""
    if not isinstance(usage, dict):
        return {}
    return {
        ours: int(usage[theirs])
        for theirs, ours in names.items()
        if isinstance(usage.get(theirs), int)
    }


def error_message(body: Any) -> str:
    """``error.message`` of an error body, the shape all three vendors use."""
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("message") or "") if isinstance(error, dict) else ""


class OpenAIShaped:
    """Answers and errors shaped as OpenAI's (``data[]`` of ``b64_json`` or ``url``, ``usage``,
    ``error.message``, ``Retry-After``): OpenAI, and ModelArk which follows it. A vendor sets
    ``title`` and ``usage_names`` (the vendor's usage field → darkroom's)."""

    title: str
    usage_names: Mapping[str, str]

    def answer(self, body: Any) -> Answer:
        usage = body.get("usage") if isinstance(body, dict) else None
        return Answer(data_images(body, self.title), counts(usage, self.usage_names))

    def error(self, body: Any) -> str:
        return error_message(body)

    def retry_delay(self, body: Any) -> float | None:
        return None  # in Retry-After
