"""A project's status, as the Magic Hour API spells it."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    DRAFT = "draft"
    QUEUED = "queued"
    RENDERING = "rendering"
    COMPLETE = "complete"
    ERROR = "error"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in (Status.COMPLETE, Status.ERROR, Status.CANCELED)


ACTIVE = (Status.QUEUED.value, Status.RENDERING.value)
