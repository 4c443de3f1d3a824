"""Jobs: the life of an image project, from a paid request to a terminal status.

``submit`` prices, charges and persists a project in one transaction and hands its id to the
queue; workers ``claim`` it, render it and ``complete`` or ``fail`` it (a failure refunds). A
restart calls ``recover`` so that no project stays non-terminal forever.

    queued ──claim──▶ rendering ──complete──▶ complete
       │                  │ └────fail───────▶ error     (refunded)
       └──────delete──────┴─────────────────▶ canceled  (refunded)
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Row
from sqlalchemy.exc import IntegrityError

from darkroom.core import credits
from darkroom.core.accounts import Principal
from darkroom.core.catalog import Catalog, ImageSpec
from darkroom.core.errors import IdempotencyConflict, NotFound
from darkroom.core.ids import new_id
from darkroom.core.status import ACTIVE, Status
from darkroom.store import projects as sql
from darkroom.store.database import Database, as_utc, utcnow

MAX_SEED = 2**31 - 1


class JobQueue(Protocol):
    def put(self, project_id: str) -> None: ...


class Outputs(Protocol):
    def delete(self, project_id: str, count: int) -> None: ...


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

    @classmethod
    def from_row(cls, row: Row) -> Project:  # type: ignore[type-arg]
        values: dict[str, Any] = dict(row._mapping)
        for key in ("created_at", "started_at", "rendered_at", "completed_at"):
            if values[key] is not None:
                values[key] = as_utc(values[key])
        values["status"] = Status(values["status"])
        values.pop("idempotency_key")
        values.pop("request_hash")
        return cls(**values)


class Jobs:
    def __init__(
        self,
        db: Database,
        catalog: Catalog,
        queue: JobQueue,
        outputs: Outputs,
        *,
        max_attempts: int = 2,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.queue = queue
        self.outputs = outputs
        self.max_attempts = max_attempts

    # -- the caller's side ---------------------------------------------------------------------

    def submit(
        self,
        who: Principal,
        spec: ImageSpec,
        *,
        name: str | None = None,
        seed: int | None = None,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
    ) -> Project:
        """Price, charge and queue a project. With an ``idempotency_key``, a repeat of the same
        request returns the first project and charges nothing more."""
        plan = self.catalog.plan(spec, who.tier)
        now = utcnow()
        project_id = new_id("img")
        values = {
            "id": project_id,
            "account_id": who.account_id,
            "name": name or f"Ai Image - {now:%Y-%m-%d %H:%M:%S}",
            "status": Status.QUEUED.value,
            "enabled": True,
            "image_count": plan.image_count,
            "model": plan.model,
            "backend": plan.backend,
            "resolution": plan.resolution,
            "aspect_ratio": plan.aspect_ratio,
            "width": plan.width,
            "height": plan.height,
            "tool": plan.tool,
            "prompt": plan.prompt,
            "final_prompt": plan.final_prompt,
            "seed": secrets.randbelow(MAX_SEED) if seed is None else seed,
            "credits_charged": plan.credits,
            "idempotency_key": idempotency_key,
            "request_hash": request_hash,
            "attempts": 0,
            "created_at": now,
        }
        try:
            with self.db.write() as conn:
                if idempotency_key is not None:
                    earlier = self._replay(conn, who, idempotency_key, request_hash)
                    if earlier is not None:
                        return earlier
                credits.charge_in(conn, who.account_id, project_id, plan.credits)
                sql.insert_project(conn, values)
        except IntegrityError:
            # A concurrent request with the same idempotency key won the race (databases that
            # do not serialise writers); answer with its project.
            if idempotency_key is None:
                raise
            with self.db.read() as conn:
                earlier = self._replay(conn, who, idempotency_key, request_hash)
            if earlier is None:
                raise
            return earlier
        self.queue.put(project_id)
        return self.get(who.account_id, project_id)

    def _replay(
        self, conn: Connection, who: Principal, key: str, request_hash: str | None
    ) -> Project | None:
        row = sql.find_by_idempotency_key(conn, who.account_id, key)
        if row is None:
            return None
        if row.request_hash != request_hash:
            raise IdempotencyConflict(
                "this Idempotency-Key was already used with a different request body"
            )
        return Project.from_row(row)

    def get(self, account_id: str, project_id: str) -> Project:
        """The caller's project; another account's project does not exist for them."""
        with self.db.read() as conn:
            row = sql.get_project(conn, project_id)
        if row is None or row.account_id != account_id or not row.enabled:
            raise NotFound()
        return Project.from_row(row)

    def delete(self, account_id: str, project_id: str) -> None:
        """Delete a project and its images; one still queued or rendering is canceled first and
        refunded."""
        with self.db.write() as conn:
            row = sql.get_project(conn, project_id)
            if row is None or row.account_id != account_id or not row.enabled:
                raise NotFound()
            self._end(conn, row, Status.CANCELED, None, None, note="canceled by delete")
            sql.disable(conn, project_id)
        self.outputs.delete(project_id, row.image_count)

    # -- the worker's side ---------------------------------------------------------------------

    def claim(self, project_id: str) -> Project | None:
        """queued → rendering; None if the project is no longer queued (deleted, taken)."""
        with self.db.write() as conn:
            if not sql.claim(conn, project_id, utcnow()):
                return None
            row = sql.get_project(conn, project_id)
        return None if row is None else Project.from_row(row)

    def complete(self, project_id: str, *, rendered_at: datetime, render_ms: int) -> bool:
        """rendering → complete; False if the project was canceled meanwhile."""
        with self.db.write() as conn:
            return sql.move(
                conn,
                project_id,
                from_=(Status.RENDERING.value,),
                status=Status.COMPLETE.value,
                rendered_at=rendered_at,
                render_ms=render_ms,
                completed_at=utcnow(),
            )

    def fail(self, project_id: str, code: str, message: str) -> bool:
        """queued/rendering → error with a refund; False if it had already ended."""
        with self.db.write() as conn:
            row = sql.get_project(conn, project_id)
            if row is None:
                return False
            return self._end(conn, row, Status.ERROR, code, message, note=f"refund: {code}")

    def recover(self) -> list[str]:
        """After a restart: re-queue or fail what was rendering, and list every queued project
        (oldest first) for the workers."""
        with self.db.write() as conn:
            for row in sql.with_status(conn, Status.RENDERING.value):
                if row.attempts < self.max_attempts:
                    sql.move(conn, row.id, from_=ACTIVE, status=Status.QUEUED.value)
                else:
                    full = sql.get_project(conn, row.id)
                    assert full is not None
                    self._end(
                        conn,
                        full,
                        Status.ERROR,
                        "worker_lost",
                        f"rendering was interrupted {row.attempts} times by a server restart",
                        note="refund: worker_lost",
                    )
            return [row.id for row in sql.with_status(conn, Status.QUEUED.value)]

    def _end(
        self,
        conn: Connection,
        row: Row,  # type: ignore[type-arg]
        status: Status,
        code: str | None,
        message: str | None,
        *,
        note: str,
    ) -> bool:
        moved = sql.move(
            conn,
            row.id,
            from_=ACTIVE,
            status=status.value,
            error_code=code,
            error_message=message,
            credits_charged=0,
            completed_at=utcnow(),
        )
        if moved:
            credits.refund_in(conn, row.account_id, row.id, note)
        return moved
