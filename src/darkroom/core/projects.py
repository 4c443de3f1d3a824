"""What a project is, as the rest of darkroom sees it: the :class:`Project` row, the
:class:`Submission` of a priced one, how its images are encoded (:class:`Output`) and stored
(:class:`StoredImage`), and a committed status change (:class:`Transition`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row

from darkroom.core.status import Status
from darkroom.store.database import as_utc

MAX_SEED = 2**31 - 1


class Submission:
    """A priced project ready to be charged and stored: its row, as :meth:`Jobs.prepare` made it."""

    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row
        self.id: str = row["id"]
        self.account_id: str = row["account_id"]
        self.credits: int = row["credits_charged"]
        self.idempotency_key: str | None = row["idempotency_key"]
        self.request_hash: str | None = row["request_hash"]


@dataclass(frozen=True)
class Output:
    """How a project's images are encoded: ``png``, ``jpeg`` or ``webp`` (quality 1..100)."""

    format: str = "png"
    quality: int | None = None


PNG = Output()


@dataclass(frozen=True)
class StoredImage:
    """One rendered image as stored: its SHA-256 (hex) and size, for clients to verify, and the
    storage's key for it (None for images stored before keys were recorded)."""

    sha256: str
    bytes: int
    key: str | None = None


@dataclass(frozen=True)
class Project:
    id: str
    account_id: str
    name: str | None
    status: Status
    enabled: bool
    image_count: int
    model: str
    backend: str
    resolution: str
    aspect_ratio: str
    width: int
    height: int
    tool: str
    prompt: str
    final_prompt: str
    seed: int
    credits_charged: int
    error_code: str | None
    error_message: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    rendered_at: datetime | None
    completed_at: datetime | None
    render_ms: int | None
    output_format: str
    output_quality: int | None
    source_count: int
    has_mask: bool
    outputs: str | None = None  # JSON, see :attr:`stored_images`
    status_reason: str | None = None  # what the backend is doing while rendering (or retention did)
    request_id: str | None = None  # the request that created it, for the job's log lines
    lease_owner: str | None = None  # the node rendering it, while it renders
    lease_until: datetime | None = None
    awaited_by: str | None = None  # the node whose request waits for its images
    answer_pending: bool = False  # that request has not yet written its answer
    outputs_deleted_at: datetime | None = None  # its images were deleted by the retention policy
    # What the vendor counted, for a project rendered through a vendor's API.
    upstream_input_tokens: int | None = None
    upstream_output_tokens: int | None = None
    upstream_images: int | None = None
    options: str | None = None  # JSON, see :attr:`vendor_options`

    @property
    def vendor_options(self) -> dict[str, str]:
        """What the caller asked of a vendor beyond the prompt (``moderation``...)."""
        return dict(json.loads(self.options)) if self.options else {}

    @property
    def stored_images(self) -> list[StoredImage]:
        """Digest and size of each output file, in order; empty before completion (and for
        projects completed before digests were recorded)."""
        if not self.outputs:
            return []
        return [StoredImage(**item) for item in json.loads(self.outputs)]

    @classmethod
    def from_row(cls, row: Row) -> Project:  # type: ignore[type-arg]
        return cls.from_mapping(row._mapping)

    @classmethod
    def from_mapping(cls, mapping: Mapping[Any, Any]) -> Project:
        values = dict(mapping)
        for key in (
            "created_at",
            "started_at",
            "rendered_at",
            "completed_at",
            "lease_until",
            "outputs_deleted_at",
        ):
            if values.get(key) is not None:
                values[key] = as_utc(values[key])
        values["status"] = Status(values["status"])
        values.pop("idempotency_key")
        values.pop("request_hash")
        return cls(**values)


@dataclass(frozen=True)
class Transition:
    """A committed status change: the project as it now is, its status before (None for a
    project just created and charged), and the credits given back by this change."""

    project: Project
    previous: Status | None
    refunded: int = 0
