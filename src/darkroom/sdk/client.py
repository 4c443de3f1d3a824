"""``darkroom.Client`` and ``darkroom.AsyncClient``: the published ``magic_hour`` SDK's surface
(``client.v1.ai_image_generator.generate(...)``, ``client.v1.image_projects.get(id=...)``), so
that switching is one import, with typed answers, exceptions per failure, retries that never
charge twice, an overall timeout and prompt completion through darkroom's long poll."""

from __future__ import annotations

from types import TracebackType

import httpx

from darkroom.sdk.resources import AsyncV1Client, V1Client
from darkroom.sdk.transport import AsyncTransport, SyncTransport

_DOC = """Arguments:
    token: the API key; ``DARKROOM_API_KEY`` when not given.
    base_url: the server; ``DARKROOM_BASE_URL``, else ``http://127.0.0.1:8000``.
    timeout: seconds for one HTTP request (a long poll gets the time it asks for on top).
    max_retries: retries after a connection failure, 429 or 5xx, with backoff and jitter,
        honouring ``Retry-After``.
    httpx_client: your own httpx client (proxies, TLS settings), as in the published SDK.
    poll_interval: seconds between polls when the server has no long poll
        (``MAGIC_HOUR_POLL_INTERVAL``, else 0.5).
"""


class _Base:
    _transport: SyncTransport | AsyncTransport

    @property
    def base_url(self) -> str:
        return self._transport.base_url


class Client(_Base):
    _transport: SyncTransport

    def __init__(
        self,
        *,
        token: str | None = None,
        base_url: str | None = None,
        timeout: float | None = 60,
        max_retries: int = 2,
        httpx_client: httpx.Client | None = None,
        poll_interval: float | None = None,
    ) -> None:
        self._transport = SyncTransport(
            http=httpx_client,
            token=token,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            poll_interval=poll_interval,
        )
        self.v1 = V1Client(self._transport)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient(_Base):
    _transport: AsyncTransport

    def __init__(
        self,
        *,
        token: str | None = None,
        base_url: str | None = None,
        timeout: float | None = 60,
        max_retries: int = 2,
        httpx_client: httpx.AsyncClient | None = None,
        poll_interval: float | None = None,
    ) -> None:
        self._transport = AsyncTransport(
            http=httpx_client,
            token=token,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            poll_interval=poll_interval,
        )
        self.v1 = AsyncV1Client(self._transport)

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


Client.__doc__ = "The darkroom API, blocking.\n\n" + _DOC
AsyncClient.__doc__ = "The darkroom API, with ``await``.\n\n" + _DOC
