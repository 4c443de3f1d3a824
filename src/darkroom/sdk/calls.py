"""Each endpoint once: how its request is built and its answer parsed. The sync and async clients
send the same :class:`Call` objects; only the transport differs."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from darkroom.sdk.types import (
    Account,
    CreateResponse,
    ImageProject,
    ModelInfo,
    ModelList,
    ProjectPage,
    RequestOptions,
    Style,
    Usage,
    Webhook,
    WebhookDelivery,
    WebhookDeliveryList,
    WebhookList,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API request, ready to send as often as retries need: everything that identifies it
    (the Idempotency-Key of a create included) is fixed when it is built."""

    method: str
    path: str
    parse: Callable[[Any], T]  # the decoded JSON body (None for an empty one) → the answer
    json: Any = None
    params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None  # this request's timeout, when not the client's
    max_retries: int | None = None  # when not the client's


def with_options(call: Call[T], options: RequestOptions | None) -> Call[T]:
    """``call`` with the caller's per-request options applied."""
    if not options:
        return call
    return Call(
        method=call.method,
        path=call.path,
        parse=call.parse,
        json=call.json,
        params={**call.params, **options.get("additional_params", {})},
        headers={**call.headers, **options.get("additional_headers", {})},
        timeout=options.get("timeout", call.timeout),
        max_retries=options.get("max_retries", call.max_retries),
    )


def _segment(value: str) -> str:
    if not value:
        raise ValueError("an id must not be empty")
    return quote(value, safe="")


def create_image(
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
) -> Call[CreateResponse]:
    optional = {
        "aspect_ratio": aspect_ratio,
        "model": model,
        "name": name,
        "orientation": orientation,
        "resolution": resolution,
        "seed": seed,
    }
    body: dict[str, Any] = {"image_count": image_count, "style": dict(style)}
    body.update({key: value for key, value in optional.items() if value is not None})
    return Call(
        "POST",
        "/v1/ai-image-generator",
        CreateResponse.model_validate,
        json=body,
        # One key per logical create: every retry of this Call sends the same one, so the
        # server charges once however many attempts reach it.
        headers={"Idempotency-Key": idempotency_key or f"dk-sdk-{uuid.uuid4()}"},
    )


def get_project(
    id: str, *, wait: float | None = None, since: str | None = None
) -> Call[ImageProject]:
    """The project; with ``wait``, darkroom's long poll: the answer comes as soon as the project
    has ended (or its status is no longer ``since``), or after ``wait`` seconds."""
    params: dict[str, str] = {}
    timeout = None
    if wait:
        params["wait"] = f"{wait:.3f}"
        if since is not None:
            params["since"] = since
        timeout = wait + 15.0  # the server holds the request up to ``wait`` seconds
    return Call(
        "GET",
        f"/v1/image-projects/{_segment(id)}",
        ImageProject.model_validate,
        params=params,
        timeout=timeout,
    )


def _nothing(_: Any) -> None:
    return None


def delete_project(id: str) -> Call[None]:
    return Call("DELETE", f"/v1/image-projects/{_segment(id)}", _nothing)


def list_projects(
    *, limit: int | None = None, before: str | None = None, status: str | None = None
) -> Call[ProjectPage]:
    given = {"limit": limit, "before": before, "status": status}
    params = {key: str(value) for key, value in given.items() if value is not None}
    return Call("GET", "/v1/image-projects", ProjectPage.model_validate, params=params)


def cancel_project(id: str) -> Call[ImageProject]:
    return Call("POST", f"/v1/image-projects/{_segment(id)}/cancel", ImageProject.model_validate)


def list_models() -> Call[ModelList]:
    return Call("GET", "/v1/models", ModelList.model_validate)


def get_model(id: str) -> Call[ModelInfo]:
    return Call("GET", f"/v1/models/{_segment(id)}", ModelInfo.model_validate)


def get_account() -> Call[Account]:
    return Call("GET", "/v1/account", Account.model_validate)


def get_usage(
    *,
    from_: str | None = None,
    to: str | None = None,
    limit: int | None = None,
    before: int | None = None,
) -> Call[Usage]:
    given = {"from": from_, "to": to, "limit": limit, "before": before}
    params = {key: str(value) for key, value in given.items() if value is not None}
    return Call("GET", "/v1/account/usage", Usage.model_validate, params=params)


def create_webhook(url: str, events: list[str] | None = None) -> Call[Webhook]:
    body: dict[str, Any] = {"url": url}
    if events is not None:
        body["events"] = list(events)
    # Not retried: a create whose answer was lost would register the URL twice.
    return Call("POST", "/v1/webhooks", Webhook.model_validate, json=body, max_retries=0)


def list_webhooks() -> Call[WebhookList]:
    return Call("GET", "/v1/webhooks", WebhookList.model_validate)


def get_webhook(id: str) -> Call[Webhook]:
    return Call("GET", f"/v1/webhooks/{_segment(id)}", Webhook.model_validate)


def update_webhook(id: str, *, disabled: bool) -> Call[Webhook]:
    body = {"disabled": disabled}
    return Call("PATCH", f"/v1/webhooks/{_segment(id)}", Webhook.model_validate, json=body)


# The server waits up to 30 s for the test's first attempt (10 s unless asked).
TEST_WAIT_MAX = 30.0


def test_webhook(id: str, *, wait: float | None = None) -> Call[WebhookDelivery]:
    params = {} if wait is None else {"wait": str(wait)}
    path = f"/v1/webhooks/{_segment(id)}/test"
    # Not retried: each call sends one more test event. Given the time the server may wait.
    return Call(
        "POST",
        path,
        WebhookDelivery.model_validate,
        params=params,
        timeout=TEST_WAIT_MAX + 30,
        max_retries=0,
    )


def delete_webhook(id: str) -> Call[None]:
    return Call("DELETE", f"/v1/webhooks/{_segment(id)}", _nothing)


def list_deliveries(
    id: str, *, limit: int | None = None, status: str | None = None
) -> Call[WebhookDeliveryList]:
    params = {"limit": str(limit)} if limit is not None else {}
    if status is not None:
        params["status"] = status
    path = f"/v1/webhooks/{_segment(id)}/deliveries"
    return Call("GET", path, WebhookDeliveryList.model_validate, params=params)


def resend_delivery(id: str, delivery_id: str) -> Call[WebhookDelivery]:
    path = f"/v1/webhooks/{_segment(id)}/deliveries/{_segment(delivery_id)}/resend"
    return Call("POST", path, WebhookDelivery.model_validate)
