"""Typed answers of the API. Fields the published SDK has keep its names and meaning; darkroom's
additions are optional, so the models also parse answers from a server that lacks them. Unknown
keys are kept (``extra="allow"``) rather than dropped."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NotRequired, TypedDict

from pydantic import BaseModel, ConfigDict, Field

from darkroom.sdk.errors import JobFailedError

Status = Literal["draft", "queued", "rendering", "complete", "error", "canceled"]
TERMINAL: frozenset[str] = frozenset({"complete", "error", "canceled"})


class Style(TypedDict):
    """``style`` of a create request, as in the published SDK."""

    prompt: str
    tool: NotRequired[str]
    quality_mode: NotRequired[str]


class RequestOptions(TypedDict, total=False):
    """Per-call options; ``timeout``, ``additional_headers`` and ``additional_params`` are the
    published SDK's."""

    timeout: float
    additional_headers: dict[str, str]
    additional_params: dict[str, str]
    max_retries: int


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class CreateResponse(_Model):
    id: str
    credits_charged: int
    frame_cost: int


class Download(_Model):
    url: str
    expires_at: datetime | None = None
    sha256: str | None = None  # darkroom: what the file hashes to
    bytes: int | None = None  # darkroom: its size


class ProjectError(_Model):
    code: str
    message: str


class ImageProject(_Model):
    id: str
    name: str | None = None
    status: Status
    image_count: int
    type: str = "AI_IMAGE"
    created_at: datetime
    enabled: bool = True
    credits_charged: int
    total_frame_cost: int | None = None
    downloads: list[Download] = Field(default_factory=list)
    error: ProjectError | None = None
    # darkroom's additions
    model: str | None = None
    backend: str | None = None
    resolution: str | None = None
    aspect_ratio: str | None = None
    width: int | None = None
    height: int | None = None
    tool: str | None = None
    prompt: str | None = None
    final_prompt: str | None = None
    seed: int | None = None
    output_format: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    render_ms: int | None = None

    @property
    def done(self) -> bool:
        """Whether the project has ended (complete, error or canceled)."""
        return self.status in TERMINAL

    def raise_for_status(self) -> None:
        """Raise :class:`JobFailedError` if the project ended in error or was canceled."""
        if self.status == "error":
            detail = f"{self.error.message} ({self.error.code})" if self.error else "error"
            raise JobFailedError(f"project {self.id} failed: {detail}", self)
        if self.status == "canceled":
            raise JobFailedError(f"project {self.id} was canceled", self)


class ImageProjectWithDownloads(ImageProject):
    downloaded_paths: list[str] | None = None
    """Where the images were saved, in order, when ``generate`` downloaded them."""


class Subscription(_Model):
    name: str | None = None
    status: str | None = None


class Account(_Model):
    id: str
    email: str | None = None
    credits: int
    tier: str
    subscription: Subscription | None = None
    name: str | None = None


class ModelInfo(_Model):
    """A model the key may use (``GET /v1/models``)."""

    id: str
    title: str | None = None
    backend: str | None = None
    tiers: list[str] = Field(default_factory=list)
    resolutions: list[str] = Field(default_factory=list)
    image_counts: list[int] = Field(default_factory=list)
    credits_per_image: dict[str, int] = Field(default_factory=dict)
    resolutions_for_tier: list[str] | None = None
    alias_for: str | None = None
    generates: bool | None = None  # whether the image generator serves it
    edits: bool | None = None  # whether the image editor (and images.edit) serves it
    max_input_images: int | None = None  # the most images one edit takes
    weights: dict[str, Any] | None = None  # diffusers models: {"source", "loadable"}


# The events a webhook endpoint can subscribe to (the server sends these names).
WEBHOOK_EVENTS = ("image.started", "image.completed", "image.errored", "image.canceled")


class ProjectPage(_Model):
    """A page of the account's projects, newest first (``GET /v1/image-projects``)."""

    data: list[ImageProject]
    has_more: bool = False
    next_before: str | None = None  # pass as ``before`` for the next page


class ModelList(_Model):
    data: list[ModelInfo]
    default_model: str | None = None


Stage = Literal["queued", "rendering", "downloading", "complete", "error", "canceled", "draft"]


@dataclass(frozen=True)
class Progress:
    """What ``on_progress`` is told: at each status change, and before each download."""

    stage: Stage
    project: ImageProject
    elapsed: float  # seconds since generate started
    downloaded: int = 0  # files saved so far (downloading)
    total: int = 0  # files to save (downloading)


class UsageEntry(_Model):
    id: int
    kind: Literal["grant", "charge", "refund"]
    amount: int
    balance_after: int
    project_id: str | None = None
    note: str | None = None
    model: str | None = None
    created_at: datetime


class ModelUsage(_Model):
    projects: int
    projects_refunded: int = 0
    images: int
    credits_charged: int
    credits_refunded: int
    net: int


class Usage(_Model):
    """darkroom: ``GET /v1/account/usage``: totals over ``[from_, to)``, per model and
    overall, and a page of ledger entries (newest first; ask again with ``before=next_before``
    while ``has_more``)."""

    from_: datetime = Field(alias="from")
    to: datetime
    totals: dict[str, int]
    models: dict[str, ModelUsage]
    entries: list[UsageEntry]
    has_more: bool = False
    next_before: int | None = None


class Webhook(_Model):
    """A webhook endpoint (``/v1/webhooks``); ``secret`` only in the answer to its creation.
    A ``disabled`` endpoint is sent nothing until it is enabled again."""

    id: str
    url: str
    events: list[str]
    status: Literal["enabled", "disabled"] = "enabled"
    created_at: datetime | None = None
    disabled_at: datetime | None = None
    secret: str | None = None


class WebhookList(_Model):
    data: list[Webhook]


class WebhookAttempt(_Model):
    at: datetime
    status_code: int | None = None
    error: str | None = None
    duration_ms: int | None = None


class WebhookDelivery(_Model):
    """One event for one endpoint; its ``id`` is the ``webhook-id`` header of every attempt."""

    id: str
    event: str
    project_id: str | None = None
    status: Literal["pending", "delivered", "failed", "canceled"]
    attempts: int
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: datetime | None = None
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    history: list[WebhookAttempt] = Field(default_factory=list)


class WebhookDeliveryList(_Model):
    data: list[WebhookDelivery]
