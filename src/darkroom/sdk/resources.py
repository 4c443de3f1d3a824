"""The resources of ``client.v1``, as twins: each sync method has an async one with the same
signature. A method only builds its :class:`~darkroom.sdk.calls.Call` or flow and hands it to
the transport; the request, parsing, retries and waiting are written once elsewhere."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from darkroom.sdk import calls, flow
from darkroom.sdk.calls import Call, with_options
from darkroom.sdk.flow import Flow
from darkroom.sdk.transport import AsyncTransport, SyncTransport, Transport
from darkroom.sdk.types import (
    Account,
    CreateResponse,
    ImageProject,
    ImageProjectWithDownloads,
    ModelInfo,
    ModelList,
    Progress,
    ProjectPage,
    RequestOptions,
    Style,
    Usage,
    Webhook,
    WebhookDelivery,
    WebhookDeliveryList,
    WebhookList,
)

ProgressCallback = Callable[[Progress], Any]


T = TypeVar("T")
Args = Mapping[str, Any]  # a method's ``locals()``: its arguments by name

_CREATE = (
    "image_count",
    "style",
    "aspect_ratio",
    "model",
    "name",
    "orientation",
    "resolution",
    "seed",
    "idempotency_key",
)


def _send(transport: Transport, call: Call[T], args: Args) -> Flow[T]:
    return flow.request(with_options(call, args.get("request_options")), transport.policy)


def _create_call(args: Args) -> Call[CreateResponse]:
    call = calls.create_image(**{name: args[name] for name in _CREATE})
    return with_options(call, args["request_options"])


def _waiting(transport: Transport, args: Args) -> flow.Waiting:
    timeout = args["timeout"]
    if timeout is not None and timeout <= 0:
        raise ValueError("timeout must be a positive number of seconds")
    return flow.Waiting(
        started=flow.clock(),
        timeout=timeout,
        poll_interval=transport.poll_interval,
        on_progress=args["on_progress"],
    )


def _finish(transport: Transport, args: Args) -> flow.Finish:
    return flow.Finish(
        _waiting(transport, args),
        args["wait_for_completion"],
        args["download_outputs"],
        args["download_directory"],
        args.get("cancel_on_timeout", False),
    )


def _create(transport: Transport, args: Args) -> Flow[CreateResponse]:
    return flow.request(_create_call(args), transport.policy)


def _generate(transport: Transport, args: Args) -> Flow[ImageProjectWithDownloads]:
    return flow.generate(_create_call(args), transport.policy, _finish(transport, args))


def _check_result(transport: Transport, args: Args) -> Flow[ImageProjectWithDownloads]:
    return flow.check_result(args["id"], transport.policy, _finish(transport, args))


def _get(transport: Transport, args: Args) -> Flow[ImageProject]:
    return _send(transport, calls.get_project(args["id"], wait=args["wait"]), args)


def _list(transport: Transport, args: Args) -> Flow[ProjectPage]:
    call = calls.list_projects(limit=args["limit"], before=args["before"], status=args["status"])
    return _send(transport, call, args)


# The docstrings live on the sync methods; the async twins say the same.
_CREATE_DOC = """Create an image project (``POST /v1/ai-image-generator``): charged now, rendered in
the background. Retries resend the same Idempotency-Key (``idempotency_key``, or one made per
call), so a project is charged once however many attempts reach the server."""

_GENERATE_DOC = """Create a project, wait until it ends, and download its images.

Waits at most ``timeout`` seconds in all (else :class:`GenerateTimeoutError`; the project is
left rendering, or with ``cancel_on_timeout`` canceled and refunded), learning of each status
change at once through darkroom's long poll, and telling ``on_progress`` (a function, or a
coroutine function for the async client). Images are streamed
into ``download_directory`` (the current directory by default; created if missing), verified
against the size and SHA-256 the server lists, and never replace an existing file: a taken name
gets `` (1)``, `` (2)``... The paths are in ``downloaded_paths``. A project that fails comes back
with ``status="error"`` and its refund, as in the published SDK; ``raise_for_status()`` turns
that into :class:`JobFailedError`."""


class AiImageGeneratorClient:
    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def create(
        self,
        *,
        image_count: int,
        style: Style | Mapping[str, Any],
        aspect_ratio: str | None = None,
        model: str | None = None,
        name: str | None = None,
        orientation: str | None = None,
        resolution: str | None = None,
        seed: int | None = None,
        idempotency_key: str | None = None,
        request_options: RequestOptions | None = None,
    ) -> CreateResponse:
        return self._transport.run(_create(self._transport, locals()))

    def generate(
        self,
        *,
        image_count: int,
        style: Style | Mapping[str, Any],
        aspect_ratio: str | None = None,
        model: str | None = None,
        name: str | None = None,
        orientation: str | None = None,
        resolution: str | None = None,
        seed: int | None = None,
        idempotency_key: str | None = None,
        wait_for_completion: bool = True,
        download_outputs: bool = True,
        download_directory: str | Path | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel_on_timeout: bool = False,
        request_options: RequestOptions | None = None,
    ) -> ImageProjectWithDownloads:
        return self._transport.run(_generate(self._transport, locals()))

    create.__doc__ = _CREATE_DOC
    generate.__doc__ = _GENERATE_DOC


class AsyncAiImageGeneratorClient:
    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def create(
        self,
        *,
        image_count: int,
        style: Style | Mapping[str, Any],
        aspect_ratio: str | None = None,
        model: str | None = None,
        name: str | None = None,
        orientation: str | None = None,
        resolution: str | None = None,
        seed: int | None = None,
        idempotency_key: str | None = None,
        request_options: RequestOptions | None = None,
    ) -> CreateResponse:
        return await self._transport.run(_create(self._transport, locals()))

    async def generate(
        self,
        *,
        image_count: int,
        style: Style | Mapping[str, Any],
        aspect_ratio: str | None = None,
        model: str | None = None,
        name: str | None = None,
        orientation: str | None = None,
        resolution: str | None = None,
        seed: int | None = None,
        idempotency_key: str | None = None,
        wait_for_completion: bool = True,
        download_outputs: bool = True,
        download_directory: str | Path | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel_on_timeout: bool = False,
        request_options: RequestOptions | None = None,
    ) -> ImageProjectWithDownloads:
        return await self._transport.run(_generate(self._transport, locals()))

    create.__doc__ = _CREATE_DOC
    generate.__doc__ = _GENERATE_DOC


_GET_DOC = """The project (``GET /v1/image-projects/{id}``). With ``wait`` (seconds, up to 60),
darkroom answers as soon as the project has ended, or after ``wait`` seconds."""

_LIST_DOC = """darkroom: the account's projects, newest first, ``limit`` (1 to 100, default 20) at
a time (``GET /v1/image-projects``); ``before``: the ``next_before`` of the previous page;
``status``: only those in that status."""

_CANCEL_DOC = """darkroom: stop a queued or rendering project and refund it in full
(``POST /v1/image-projects/{id}/cancel``); the project, now ``canceled``. One that already
completed or failed raises :class:`BadRequestError` (409)."""

_CHECK_DOC = """The published SDK's ``check_result``: the project, optionally after waiting until
it ends and downloading its images (as in ``generate``)."""


class ImageProjectsClient:
    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def get(
        self, *, id: str, wait: float | None = None, request_options: RequestOptions | None = None
    ) -> ImageProject:
        return self._transport.run(_get(self._transport, locals()))

    def list(
        self,
        *,
        limit: int | None = None,
        before: str | None = None,
        status: str | None = None,
        request_options: RequestOptions | None = None,
    ) -> ProjectPage:
        return self._transport.run(_list(self._transport, locals()))

    def delete(self, *, id: str, request_options: RequestOptions | None = None) -> None:
        """Delete the project and its images (``DELETE /v1/image-projects/{id}``)."""
        self._transport.run(_send(self._transport, calls.delete_project(id), locals()))

    def cancel(self, *, id: str, request_options: RequestOptions | None = None) -> ImageProject:
        return self._transport.run(_send(self._transport, calls.cancel_project(id), locals()))

    def check_result(
        self,
        id: str,
        wait_for_completion: bool = True,
        download_outputs: bool = True,
        download_directory: str | Path | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel_on_timeout: bool = False,
    ) -> ImageProjectWithDownloads:
        return self._transport.run(_check_result(self._transport, locals()))

    get.__doc__ = _GET_DOC
    list.__doc__ = _LIST_DOC
    check_result.__doc__ = _CHECK_DOC
    cancel.__doc__ = _CANCEL_DOC


class AsyncImageProjectsClient:
    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def get(
        self, *, id: str, wait: float | None = None, request_options: RequestOptions | None = None
    ) -> ImageProject:
        return await self._transport.run(_get(self._transport, locals()))

    async def list(
        self,
        *,
        limit: int | None = None,
        before: str | None = None,
        status: str | None = None,
        request_options: RequestOptions | None = None,
    ) -> ProjectPage:
        return await self._transport.run(_list(self._transport, locals()))

    async def delete(self, *, id: str, request_options: RequestOptions | None = None) -> None:
        """Delete the project and its images (``DELETE /v1/image-projects/{id}``)."""
        await self._transport.run(_send(self._transport, calls.delete_project(id), locals()))

    async def cancel(
        self, *, id: str, request_options: RequestOptions | None = None
    ) -> ImageProject:
        return await self._transport.run(_send(self._transport, calls.cancel_project(id), locals()))

    async def check_result(
        self,
        id: str,
        wait_for_completion: bool = True,
        download_outputs: bool = True,
        download_directory: str | Path | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        cancel_on_timeout: bool = False,
    ) -> ImageProjectWithDownloads:
        return await self._transport.run(_check_result(self._transport, locals()))

    get.__doc__ = _GET_DOC
    list.__doc__ = _LIST_DOC
    check_result.__doc__ = _CHECK_DOC
    cancel.__doc__ = _CANCEL_DOC


class ModelsClient:
    """The models the key may use, with prices (``GET /v1/models``)."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def list(self, *, request_options: RequestOptions | None = None) -> ModelList:
        return self._transport.run(_send(self._transport, calls.list_models(), locals()))

    def get(self, *, id: str, request_options: RequestOptions | None = None) -> ModelInfo:
        return self._transport.run(_send(self._transport, calls.get_model(id), locals()))


class AsyncModelsClient:
    """The models the key may use, with prices (``GET /v1/models``)."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def list(self, *, request_options: RequestOptions | None = None) -> ModelList:
        return await self._transport.run(_send(self._transport, calls.list_models(), locals()))

    async def get(self, *, id: str, request_options: RequestOptions | None = None) -> ModelInfo:
        return await self._transport.run(_send(self._transport, calls.get_model(id), locals()))


_USAGE_DOC = """darkroom: credits and images over ``[from_, to)`` (ISO 8601 dates or datetimes;
the last 30 days by default), per model and overall, with the ledger entries
(``GET /v1/account/usage``)."""


class AccountClient:
    """The key's account: balance and tier (``GET /v1/account``; ``list`` as published)."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def list(self, *, request_options: RequestOptions | None = None) -> Account:
        return self._transport.run(_send(self._transport, calls.get_account(), locals()))

    def usage(
        self,
        *,
        from_: str | None = None,
        to: str | None = None,
        limit: int | None = None,
        before: int | None = None,
        request_options: RequestOptions | None = None,
    ) -> Usage:
        call = calls.get_usage(from_=from_, to=to, limit=limit, before=before)
        return self._transport.run(_send(self._transport, call, locals()))

    usage.__doc__ = _USAGE_DOC


class AsyncAccountClient:
    """The key's account: balance and tier (``GET /v1/account``; ``list`` as published)."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def list(self, *, request_options: RequestOptions | None = None) -> Account:
        return await self._transport.run(_send(self._transport, calls.get_account(), locals()))

    async def usage(
        self,
        *,
        from_: str | None = None,
        to: str | None = None,
        limit: int | None = None,
        before: int | None = None,
        request_options: RequestOptions | None = None,
    ) -> Usage:
        call = calls.get_usage(from_=from_, to=to, limit=limit, before=before)
        return await self._transport.run(_send(self._transport, call, locals()))

    usage.__doc__ = _USAGE_DOC


_WEBHOOKS_DOC = """darkroom: webhook endpoints (``/v1/webhooks``). ``create`` answers with the
signing ``secret``, shown only then; check deliveries with :func:`darkroom.verify_webhook`."""


class WebhooksClient:
    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def create(
        self,
        *,
        url: str,
        events: list[str] | None = None,
        request_options: RequestOptions | None = None,
    ) -> Webhook:
        return self._transport.run(
            _send(self._transport, calls.create_webhook(url, events), locals())
        )

    def list(self, *, request_options: RequestOptions | None = None) -> WebhookList:
        return self._transport.run(_send(self._transport, calls.list_webhooks(), locals()))

    def get(self, *, id: str, request_options: RequestOptions | None = None) -> Webhook:
        return self._transport.run(_send(self._transport, calls.get_webhook(id), locals()))

    def update(
        self, *, id: str, disabled: bool, request_options: RequestOptions | None = None
    ) -> Webhook:
        """Disable the endpoint (``disabled=True``: it is sent nothing, new events are not kept
        for it, pending deliveries wait) or enable it again (what waited goes out)."""
        call = calls.update_webhook(id, disabled=disabled)
        return self._transport.run(_send(self._transport, call, locals()))

    def test(
        self, *, id: str, wait: float | None = None, request_options: RequestOptions | None = None
    ) -> WebhookDelivery:
        """Send the endpoint a signed ``webhook.test`` event; the delivery after its first
        attempt (``status`` ``delivered``, or ``pending`` with ``last_error``), or still
        pending with no attempt after ``wait`` seconds (10 unless given, at most 30)."""
        call = calls.test_webhook(id, wait=wait)
        return self._transport.run(_send(self._transport, call, locals()))

    def delete(self, *, id: str, request_options: RequestOptions | None = None) -> None:
        self._transport.run(_send(self._transport, calls.delete_webhook(id), locals()))

    def deliveries(
        self,
        *,
        id: str,
        limit: int | None = None,
        status: str | None = None,
        request_options: RequestOptions | None = None,
    ) -> WebhookDeliveryList:
        call = calls.list_deliveries(id, limit=limit, status=status)
        return self._transport.run(_send(self._transport, call, locals()))

    def resend(
        self, *, id: str, delivery_id: str, request_options: RequestOptions | None = None
    ) -> WebhookDelivery:
        call = calls.resend_delivery(id, delivery_id)
        return self._transport.run(_send(self._transport, call, locals()))

    __doc__ = _WEBHOOKS_DOC


class AsyncWebhooksClient:
    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def create(
        self,
        *,
        url: str,
        events: list[str] | None = None,
        request_options: RequestOptions | None = None,
    ) -> Webhook:
        call = calls.create_webhook(url, events)
        return await self._transport.run(_send(self._transport, call, locals()))

    async def list(self, *, request_options: RequestOptions | None = None) -> WebhookList:
        return await self._transport.run(_send(self._transport, calls.list_webhooks(), locals()))

    async def get(self, *, id: str, request_options: RequestOptions | None = None) -> Webhook:
        return await self._transport.run(_send(self._transport, calls.get_webhook(id), locals()))

    async def update(
        self, *, id: str, disabled: bool, request_options: RequestOptions | None = None
    ) -> Webhook:
        call = calls.update_webhook(id, disabled=disabled)
        return await self._transport.run(_send(self._transport, call, locals()))

    async def test(
        self, *, id: str, wait: float | None = None, request_options: RequestOptions | None = None
    ) -> WebhookDelivery:
        call = calls.test_webhook(id, wait=wait)
        return await self._transport.run(_send(self._transport, call, locals()))

    update.__doc__ = WebhooksClient.update.__doc__
    test.__doc__ = WebhooksClient.test.__doc__

    async def delete(self, *, id: str, request_options: RequestOptions | None = None) -> None:
        await self._transport.run(_send(self._transport, calls.delete_webhook(id), locals()))

    async def deliveries(
        self,
        *,
        id: str,
        limit: int | None = None,
        status: str | None = None,
        request_options: RequestOptions | None = None,
    ) -> WebhookDeliveryList:
        call = calls.list_deliveries(id, limit=limit, status=status)
        return await self._transport.run(_send(self._transport, call, locals()))

    async def resend(
        self, *, id: str, delivery_id: str, request_options: RequestOptions | None = None
    ) -> WebhookDelivery:
        call = calls.resend_delivery(id, delivery_id)
        return await self._transport.run(_send(self._transport, call, locals()))

    __doc__ = _WEBHOOKS_DOC


class V1Client:
    def __init__(self, transport: SyncTransport) -> None:
        self.ai_image_generator = AiImageGeneratorClient(transport)
        self.image_projects = ImageProjectsClient(transport)
        self.models = ModelsClient(transport)
        self.account = AccountClient(transport)
        self.webhooks = WebhooksClient(transport)


class AsyncV1Client:
    def __init__(self, transport: AsyncTransport) -> None:
        self.ai_image_generator = AsyncAiImageGeneratorClient(transport)
        self.image_projects = AsyncImageProjectsClient(transport)
        self.models = AsyncModelsClient(transport)
        self.account = AsyncAccountClient(transport)
        self.webhooks = AsyncWebhooksClient(transport)
