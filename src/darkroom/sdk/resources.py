"""The resources of ``client.v1``, as twins: each sync method has an async one with the same
signature. A method only builds its :class:`~darkroom.sdk.calls.Call` or flow and hands it to
the transport; the request, parsing, retries and waiting are written once elsewhere."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import (
    Any,
    Required,
    TypedDict,
    TypeVar,
    Unpack,
    get_args,
    get_origin,
    get_type_hints,
)

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
F = TypeVar("F", bound=Callable[..., Any])


class CreateParams(TypedDict, total=False):
    """The keywords of ``ai_image_generator.create`` (sync and async): the published SDK's,
    with darkroom's ``seed`` and ``idempotency_key``."""

    image_count: Required[int]
    style: Required[Style | Mapping[str, Any]]
    aspect_ratio: str | None
    model: str | None
    name: str | None
    orientation: str | None
    resolution: str | None
    seed: int | None
    idempotency_key: str | None
    request_options: RequestOptions | None


class FinishParams(TypedDict, total=False):
    """What ``generate`` and ``check_result`` do once the project exists."""

    wait_for_completion: bool
    download_outputs: bool
    download_directory: str | Path | None
    timeout: float | None
    on_progress: ProgressCallback | None
    cancel_on_timeout: bool


class GenerateParams(CreateParams, FinishParams, total=False):
    """The keywords of ``ai_image_generator.generate`` (sync and async)."""


class WebhookCreateParams(TypedDict, total=False):
    """The keywords of ``webhooks.create`` (sync and async)."""

    url: Required[str]
    events: list[str] | None
    request_options: RequestOptions | None


# What a keyword left out means (every other one: None).
DEFAULTS: Mapping[str, Any] = {
    "wait_for_completion": True,
    "download_outputs": True,
    "cancel_on_timeout": False,
}


@functools.cache
def _fields(kind: Any) -> dict[str, tuple[Any, bool]]:
    """Each keyword of ``kind`` (a TypedDict): its type, and whether it is required. (Read from
    the hints: with postponed annotations, a TypedDict's own ``__required_keys__`` does not
    see ``Required``.)"""
    fields = {}
    for name, hint in get_type_hints(kind, include_extras=True).items():
        required = get_origin(hint) is Required
        fields[name] = (get_args(hint)[0] if required else hint, required)
    return fields


def _given(params: Mapping[str, Any], kind: Any, method: str) -> dict[str, Any]:
    """``params`` checked against the keywords of ``kind`` as Python checks a signature, with
    the defaults filled in."""
    fields = _fields(kind)
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise TypeError(f"{method}() got an unexpected keyword argument {unknown[0]!r}")
    missing = [name for name, (_, required) in fields.items() if required and name not in params]
    if missing:
        raise TypeError(f"{method}() missing required keyword argument {missing[0]!r}")
    return {name: params.get(name, DEFAULTS.get(name)) for name in fields}


def keywords(kind: Any) -> Callable[[F], F]:
    """Show a method that takes ``**params: Unpack[kind]`` with its keywords spelled out (for
    ``help()``, ``inspect.signature`` and the editors that read it), as if it declared them."""

    def shown(method: F) -> F:
        self = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
        params = [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=hint,
                default=inspect.Parameter.empty if required else DEFAULTS.get(name),
            )
            for name, (hint, required) in _fields(kind).items()
        ]
        returns = get_type_hints(method).get("return", inspect.Signature.empty)
        method.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [self, *params], return_annotation=returns
        )
        return method

    return shown


def _send(transport: Transport, call: Call[T], options: RequestOptions | None) -> Flow[T]:
    return flow.request(with_options(call, options), transport.policy)


def _create_call(params: Mapping[str, Any]) -> Call[CreateResponse]:
    call = calls.create_image(
        image_count=params["image_count"],
        style=params["style"],
        aspect_ratio=params["aspect_ratio"],
        model=params["model"],
        name=params["name"],
        orientation=params["orientation"],
        resolution=params["resolution"],
        seed=params["seed"],
        idempotency_key=params["idempotency_key"],
    )
    return with_options(call, params["request_options"])


def _finish(transport: Transport, params: Mapping[str, Any]) -> flow.Finish:
    timeout = params["timeout"]
    if timeout is not None and timeout <= 0:
        raise ValueError("timeout must be a positive number of seconds")
    waiting = flow.Waiting(
        started=flow.clock(),
        timeout=timeout,
        poll_interval=transport.poll_interval,
        on_progress=params["on_progress"],
    )
    return flow.Finish(
        waiting,
        params["wait_for_completion"],
        params["download_outputs"],
        params["download_directory"],
        params["cancel_on_timeout"],
    )


def _create(transport: Transport, params: CreateParams) -> Flow[CreateResponse]:
    given = _given(params, CreateParams, "create")
    return flow.request(_create_call(given), transport.policy)


def _generate(transport: Transport, params: GenerateParams) -> Flow[ImageProjectWithDownloads]:
    given = _given(params, GenerateParams, "generate")
    return flow.generate(_create_call(given), transport.policy, _finish(transport, given))


def _check_result(
    transport: Transport, id: str, params: FinishParams
) -> Flow[ImageProjectWithDownloads]:
    given = _given(params, FinishParams, "check_result")
    return flow.check_result(id, transport.policy, _finish(transport, given))


def _create_webhook(transport: Transport, params: WebhookCreateParams) -> Flow[Webhook]:
    given = _given(params, WebhookCreateParams, "create")
    call = calls.create_webhook(given["url"], given["events"])
    return _send(transport, call, given["request_options"])


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

    @keywords(CreateParams)
    def create(self, **params: Unpack[CreateParams]) -> CreateResponse:
        return self._transport.run(_create(self._transport, params))

    @keywords(GenerateParams)
    def generate(self, **params: Unpack[GenerateParams]) -> ImageProjectWithDownloads:
        return self._transport.run(_generate(self._transport, params))

    create.__doc__ = _CREATE_DOC
    generate.__doc__ = _GENERATE_DOC


class AsyncAiImageGeneratorClient:
    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    @keywords(CreateParams)
    async def create(self, **params: Unpack[CreateParams]) -> CreateResponse:
        return await self._transport.run(_create(self._transport, params))

    @keywords(GenerateParams)
    async def generate(self, **params: Unpack[GenerateParams]) -> ImageProjectWithDownloads:
        return await self._transport.run(_generate(self._transport, params))

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
        call = calls.get_project(id, wait=wait)
        return self._transport.run(_send(self._transport, call, request_options))

    def list(
        self,
        *,
        limit: int | None = None,
        before: str | None = None,
        status: str | None = None,
        request_options: RequestOptions | None = None,
    ) -> ProjectPage:
        call = calls.list_projects(limit=limit, before=before, status=status)
        return self._transport.run(_send(self._transport, call, request_options))

    def delete(self, *, id: str, request_options: RequestOptions | None = None) -> None:
        """Delete the project and its images (``DELETE /v1/image-projects/{id}``)."""
        self._transport.run(_send(self._transport, calls.delete_project(id), request_options))

    def cancel(self, *, id: str, request_options: RequestOptions | None = None) -> ImageProject:
        call = calls.cancel_project(id)
        return self._transport.run(_send(self._transport, call, request_options))

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
        finish = FinishParams(
            wait_for_completion=wait_for_completion,
            download_outputs=download_outputs,
            download_directory=download_directory,
            timeout=timeout,
            on_progress=on_progress,
            cancel_on_timeout=cancel_on_timeout,
        )
        return self._transport.run(_check_result(self._transport, id, finish))

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
        call = calls.get_project(id, wait=wait)
        return await self._transport.run(_send(self._transport, call, request_options))

    async def list(
        self,
        *,
        limit: int | None = None,
        before: str | None = None,
        status: str | None = None,
        request_options: RequestOptions | None = None,
    ) -> ProjectPage:
        call = calls.list_projects(limit=limit, before=before, status=status)
        return await self._transport.run(_send(self._transport, call, request_options))

    async def delete(self, *, id: str, request_options: RequestOptions | None = None) -> None:
        """Delete the project and its images (``DELETE /v1/image-projects/{id}``)."""
        call = calls.delete_project(id)
        await self._transport.run(_send(self._transport, call, request_options))

    async def cancel(
        self, *, id: str, request_options: RequestOptions | None = None
    ) -> ImageProject:
        call = calls.cancel_project(id)
        return await self._transport.run(_send(self._transport, call, request_options))

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
        finish = FinishParams(
            wait_for_completion=wait_for_completion,
            download_outputs=download_outputs,
            download_directory=download_directory,
            timeout=timeout,
            on_progress=on_progress,
            cancel_on_timeout=cancel_on_timeout,
        )
        return await self._transport.run(_check_result(self._transport, id, finish))

    get.__doc__ = _GET_DOC
    list.__doc__ = _LIST_DOC
    check_result.__doc__ = _CHECK_DOC
    cancel.__doc__ = _CANCEL_DOC


class ModelsClient:
    """The models the key may use, with prices (``GET /v1/models``)."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def list(self, *, request_options: RequestOptions | None = None) -> ModelList:
        return self._transport.run(_send(self._transport, calls.list_models(), request_options))

    def get(self, *, id: str, request_options: RequestOptions | None = None) -> ModelInfo:
        return self._transport.run(_send(self._transport, calls.get_model(id), request_options))


class AsyncModelsClient:
    """The models the key may use, with prices (``GET /v1/models``)."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def list(self, *, request_options: RequestOptions | None = None) -> ModelList:
        return await self._transport.run(
            _send(self._transport, calls.list_models(), request_options)
        )

    async def get(self, *, id: str, request_options: RequestOptions | None = None) -> ModelInfo:
        return await self._transport.run(
            _send(self._transport, calls.get_model(id), request_options)
        )


_USAGE_DOC = """darkroom: credits and images over ``[from_, to)`` (ISO 8601 dates or datetimes;
the last 30 days by default), per model and overall, with the ledger entries
(``GET /v1/account/usage``)."""


class AccountClient:
    """The key's account: balance and tier (``GET /v1/account``; ``list`` as published)."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def list(self, *, request_options: RequestOptions | None = None) -> Account:
        return self._transport.run(_send(self._transport, calls.get_account(), request_options))

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
        return self._transport.run(_send(self._transport, call, request_options))

    usage.__doc__ = _USAGE_DOC


class AsyncAccountClient:
    """The key's account: balance and tier (``GET /v1/account``; ``list`` as published)."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def list(self, *, request_options: RequestOptions | None = None) -> Account:
        return await self._transport.run(
            _send(self._transport, calls.get_account(), request_options)
        )

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
        return await self._transport.run(_send(self._transport, call, request_options))

    usage.__doc__ = _USAGE_DOC


_WEBHOOKS_DOC = """darkroom: webhook endpoints (``/v1/webhooks``). ``create`` answers with the
signing ``secret``, shown only then; check deliveries with :func:`darkroom.verify_webhook`."""


class WebhooksClient:
    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    @keywords(WebhookCreateParams)
    def create(self, **params: Unpack[WebhookCreateParams]) -> Webhook:
        return self._transport.run(_create_webhook(self._transport, params))

    def list(self, *, request_options: RequestOptions | None = None) -> WebhookList:
        return self._transport.run(_send(self._transport, calls.list_webhooks(), request_options))

    def get(self, *, id: str, request_options: RequestOptions | None = None) -> Webhook:
        return self._transport.run(_send(self._transport, calls.get_webhook(id), request_options))

    def update(
        self, *, id: str, disabled: bool, request_options: RequestOptions | None = None
    ) -> Webhook:
        """Disable the endpoint (``disabled=True``: it is sent nothing, new events are not kept
        for it, pending deliveries wait) or enable it again (what waited goes out)."""
        call = calls.update_webhook(id, disabled=disabled)
        return self._transport.run(_send(self._transport, call, request_options))

    def test(
        self, *, id: str, wait: float | None = None, request_options: RequestOptions | None = None
    ) -> WebhookDelivery:
        """Send the endpoint a signed ``webhook.test`` event; the delivery after its first
        attempt (``status`` ``delivered``, or ``pending`` with ``last_error``), or still
        pending with no attempt after ``wait`` seconds (10 unless given, at most 30)."""
        call = calls.test_webhook(id, wait=wait)
        return self._transport.run(_send(self._transport, call, request_options))

    def delete(self, *, id: str, request_options: RequestOptions | None = None) -> None:
        self._transport.run(_send(self._transport, calls.delete_webhook(id), request_options))

    def deliveries(
        self,
        *,
        id: str,
        limit: int | None = None,
        status: str | None = None,
        request_options: RequestOptions | None = None,
    ) -> WebhookDeliveryList:
        call = calls.list_deliveries(id, limit=limit, status=status)
        return self._transport.run(_send(self._transport, call, request_options))

    def resend(
        self, *, id: str, delivery_id: str, request_options: RequestOptions | None = None
    ) -> WebhookDelivery:
        call = calls.resend_delivery(id, delivery_id)
        return self._transport.run(_send(self._transport, call, request_options))

    __doc__ = _WEBHOOKS_DOC


class AsyncWebhooksClient:
    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    @keywords(WebhookCreateParams)
    async def create(self, **params: Unpack[WebhookCreateParams]) -> Webhook:
        return await self._transport.run(_create_webhook(self._transport, params))

    async def list(self, *, request_options: RequestOptions | None = None) -> WebhookList:
        return await self._transport.run(
            _send(self._transport, calls.list_webhooks(), request_options)
        )

    async def get(self, *, id: str, request_options: RequestOptions | None = None) -> Webhook:
        return await self._transport.run(
            _send(self._transport, calls.get_webhook(id), request_options)
        )

    async def update(
        self, *, id: str, disabled: bool, request_options: RequestOptions | None = None
    ) -> Webhook:
        call = calls.update_webhook(id, disabled=disabled)
        return await self._transport.run(_send(self._transport, call, request_options))

    async def test(
        self, *, id: str, wait: float | None = None, request_options: RequestOptions | None = None
    ) -> WebhookDelivery:
        call = calls.test_webhook(id, wait=wait)
        return await self._transport.run(_send(self._transport, call, request_options))

    update.__doc__ = WebhooksClient.update.__doc__
    test.__doc__ = WebhooksClient.test.__doc__

    async def delete(self, *, id: str, request_options: RequestOptions | None = None) -> None:
        await self._transport.run(_send(self._transport, calls.delete_webhook(id), request_options))

    async def deliveries(
        self,
        *,
        id: str,
        limit: int | None = None,
        status: str | None = None,
        request_options: RequestOptions | None = None,
    ) -> WebhookDeliveryList:
        call = calls.list_deliveries(id, limit=limit, status=status)
        return await self._transport.run(_send(self._transport, call, request_options))

    async def resend(
        self, *, id: str, delivery_id: str, request_options: RequestOptions | None = None
    ) -> WebhookDelivery:
        call = calls.resend_delivery(id, delivery_id)
        return await self._transport.run(_send(self._transport, call, request_options))

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
