"""Jobs: the life of an image project, from a paid request to a terminal status.

``prepare`` prices a project and ``submit_many`` (or the async group commit in
``core/intake.py``) charges and persists projects in one transaction and hands their ids to the
queue; workers ``claim`` it, render it and ``complete`` or ``fail`` it (a failure refunds). A
restart calls ``recover`` so that no project stays non-terminal forever.

Every status change is reported as a :class:`Transition`: to *recorders* inside its own
transaction (webhook deliveries are written there, so they commit with the change or not at
all), and to *observers* once it has committed (metrics).

    queued ──claim──▶ rendering ──complete──▶ complete
       │                  │ └────fail───────▶ error     (refunded)
       └──────delete──────┴─────────────────▶ canceled  (refunded)
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Row
from sqlalchemy.exc import IntegrityError

from darkroom.core import credits
from darkroom.core.accounts import Principal
from darkroom.core.catalog import Catalog, ImageSpec
from darkroom.core.errors import DarkroomError, IdempotencyConflict, NotFound
from darkroom.core.ids import new_id
from darkroom.core.status import ACTIVE, Status
from darkroom.observe.context import current_request_id
from darkroom.store import projects as sql
from darkroom.store.database import Database, as_utc, utcnow

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


def _conflict() -> IdempotencyConflict:
    return IdempotencyConflict(
        "this Idempotency-Key was already used with a different request body"
    )


@dataclass(frozen=True)
class Output:
    """How a project's images are encoded: ``png``, ``jpeg`` or ``webp`` (quality 1..100)."""

    format: str = "png"
    quality: int | None = None


PNG = Output()


@dataclass(frozen=True)
class StoredImage:
    """One rendered image as stored: its SHA-256 (hex) and size, for clients to verify."""

    sha256: str
    bytes: int


class JobQueue(Protocol):
    def put(self, project_id: str) -> None: ...


class Outputs(Protocol):
    def delete_project(self, project: Project) -> None: ...
    def delete_sources(self, project_id: str, count: int) -> None: ...


Listener = Callable[[str], None]


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
    status_note: str | None = None  # what the backend is doing while rendering
    request_id: str | None = None  # the request that created it, for the job's log lines
    lease_owner: str | None = None  # the node rendering it, while it renders
    lease_until: datetime | None = None
    awaited_by: str | None = None  # the node whose request waits for its images

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
        for key in ("created_at", "started_at", "rendered_at", "completed_at", "lease_until"):
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


Recorder = Callable[[Connection, Transition], None]
Observer = Callable[[Transition], None]


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
        # Called with a project id after each committed status change (from any thread).
        self.listeners: list[Listener] = []
        # Called with each status change inside its transaction (see the module docstring).
        self.recorders: list[Recorder] = []
        # Called with each status change once committed (from any thread).
        self.observers: list[Observer] = []

    def _record(
        self, conn: Connection, project_id: str, previous: Status | None, refunded: int = 0
    ) -> Transition:
        row = sql.get_project(conn, project_id)
        assert row is not None
        change = Transition(Project.from_row(row), previous, refunded)
        for recorder in self.recorders:
            recorder(conn, change)
        return change

    def _changed(self, change: Transition) -> None:
        for observer in self.observers:
            observer(change)
        for listener in self.listeners:
            listener(change.project.id)

    # -- the caller's side ---------------------------------------------------------------------

    def prepare(
        self,
        who: Principal,
        spec: ImageSpec,
        *,
        name: str | None = None,
        seed: int | None = None,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        output: Output = PNG,
        source_count: int = 0,
        has_mask: bool = False,
        request_id: str | None = None,
    ) -> Submission:
        """Price and describe a project, or raise why it cannot be made; nothing is written.
        ``source_count`` source images (and a mask) must be stored under the submission's id
        before it is submitted. ``request_id`` defaults to the request being served."""
        plan = self.catalog.plan(spec, who.tier)
        now = utcnow()
        row = {
            "id": new_id("img"),
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
            "started_at": None,
            "rendered_at": None,
            "completed_at": None,
            "render_ms": None,
            "error_code": None,
            "error_message": None,
            "output_format": output.format,
            "output_quality": output.quality,
            "source_count": source_count,
            "has_mask": has_mask,
            "request_id": request_id or current_request_id(),
        }
        return Submission(row)

    def submit_many(self, items: list[Submission]) -> list[Project | DarkroomError]:
        """Charge and persist prepared projects in one transaction (one commit for many
        concurrent creates), then queue them. Each item gets its own outcome: its project, or
        the error that refused it alone (402, an Idempotency-Key conflict). With an
        Idempotency-Key, a repeat of an earlier request returns that project, charged once."""
        try:
            with self.db.write() as conn:
                outcomes = self.stage(conn, items)
        except IntegrityError:
            if len(items) == 1:
                # A concurrent request with the same idempotency key won the race (databases
                # that do not serialise writers); answer with its project.
                with self.db.read() as conn:
                    earlier = self._replay(conn, items[0])
                if earlier is None:
                    raise
                return [earlier]
            return [self.submit_many([item])[0] for item in items]
        self.publish(items, outcomes)
        return outcomes

    def publish(self, items: list[Submission], outcomes: list[Project | DarkroomError]) -> None:
        """Hand the projects created by a committed :meth:`stage` to the workers."""
        for item, outcome in zip(items, outcomes, strict=True):
            if isinstance(outcome, Project) and outcome.id == item.id:
                for observer in self.observers:
                    observer(Transition(outcome, None))
                self.queue.put(outcome.id)

    def stage(self, conn: Connection, items: list[Submission]) -> list[Project | DarkroomError]:
        """The writes of :meth:`submit_many`, in the caller's write transaction; once it has
        committed, :meth:`publish` queues the new projects."""
        outcomes: list[Project | DarkroomError | None] = [None] * len(items)
        first_with_key: dict[tuple[str, str], int] = {}
        fresh: list[int] = []
        for i, item in enumerate(items):
            key = item.idempotency_key
            if key is not None:
                if (item.account_id, key) in first_with_key:
                    continue  # settled below, as the first request with this key
                first_with_key[(item.account_id, key)] = i
                try:
                    outcomes[i] = self._replay(conn, item)
                except IdempotencyConflict as exc:
                    outcomes[i] = exc
                if outcomes[i] is not None:
                    continue
            fresh.append(i)
        refusals = credits.charge_in(
            conn,
            [credits.Charge(items[i].account_id, items[i].id, items[i].credits) for i in fresh],
        )
        charged = []
        for i, refusal in zip(fresh, refusals, strict=True):
            outcomes[i] = refusal
            if refusal is None:
                charged.append(items[i].row)
                outcomes[i] = Project.from_mapping(items[i].row)
        sql.insert_projects(conn, charged)
        for i, item in enumerate(items):
            if outcomes[i] is None:  # a repeat of an Idempotency-Key used earlier in this batch
                assert item.idempotency_key is not None
                first = first_with_key[(item.account_id, item.idempotency_key)]
                same = items[first].request_hash == item.request_hash
                outcomes[i] = outcomes[first] if same else _conflict()
        return [o for o in outcomes if o is not None]

    def _replay(self, conn: Connection, item: Submission) -> Project | None:
        assert item.idempotency_key is not None
        row = sql.find_by_idempotency_key(conn, item.account_id, item.idempotency_key)
        if row is None:
            return None
        if row.request_hash != item.request_hash:
            raise _conflict()
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
            ended = self._end(conn, row, Status.CANCELED, None, None, note="canceled by delete")
            sql.disable(conn, project_id)
        self.outputs.delete_project(Project.from_row(row))
        if ended is not None:
            self._changed(ended)

    def cancel(self, account_id: str, project_id: str, note: str) -> Project:
        """queued/rendering → canceled with a full refund (a worker rendering it discards its
        images); a project that had already ended is returned as it is."""
        with self.db.write() as conn:
            row = sql.get_project(conn, project_id)
            if row is None or row.account_id != account_id or not row.enabled:
                raise NotFound()
            ended = self._end(conn, row, Status.CANCELED, None, None, note=note)
        if ended is None:
            return Project.from_row(row)
        self.outputs.delete_sources(project_id, ended.project.source_count)
        self._changed(ended)
        return ended.project

    # -- the worker's side ---------------------------------------------------------------------

    def claim(self, project_id: str) -> Project | None:
        """queued → rendering; None if the project is no longer queued (deleted, taken)."""

        def claim(conn: Connection) -> Transition | None:
            if not sql.claim(conn, project_id, utcnow()):
                return None
            return self._record(conn, project_id, Status.QUEUED)

        change = self.db.transact(claim, durable=False)
        if change is None:
            return None
        self._changed(change)
        return change.project

    def complete(
        self,
        project_id: str,
        *,
        rendered_at: datetime,
        render_ms: int,
        stored: list[StoredImage] | None = None,
    ) -> bool:
        """rendering → complete, recording the stored files' digests; False if the project was
        canceled meanwhile."""

        def complete(conn: Connection) -> Transition | None:
            moved = sql.move(
                conn,
                project_id,
                from_=(Status.RENDERING.value,),
                status=Status.COMPLETE.value,
                rendered_at=rendered_at,
                render_ms=render_ms,
                completed_at=utcnow(),
                outputs=json.dumps([vars(item) for item in stored or []]),
                status_note=None,
            )
            return self._record(conn, project_id, Status.RENDERING) if moved else None

        change = self.db.transact(complete, durable=False)
        if change is not None:
            self._changed(change)
        return change is not None

    def note(self, project_id: str, text: str | None) -> None:
        """Set (or with None clear) a rendering project's status note."""
        note = None if text is None else text[:200]
        self.db.transact(
            lambda conn: sql.move(
                conn, project_id, from_=(Status.RENDERING.value,), status_note=note
            ),
            durable=False,
        )

    def fail(self, project_id: str, code: str, message: str) -> bool:
        """queued/rendering → error with a refund; False if it had already ended."""

        def fail(conn: Connection) -> Transition | None:
            row = sql.get_project(conn, project_id)
            if row is None:
                return None
            return self._end(conn, row, Status.ERROR, code, message, note=f"refund: {code}")

        ended = self.db.transact(fail)
        if ended is None:
            return False
        self._changed(ended)
        return True

    def status_of(self, project_id: str) -> Status | None:
        """A project's status as committed (None if there is no such project)."""
        with self.db.read() as conn:
            row = sql.get_project(conn, project_id)
        return None if row is None else Status(row.status)

    def queued(self, limit: int) -> list[str]:
        """The oldest queued projects, for workers that look for work in the database."""
        with self.db.read() as conn:
            return [row.id for row in sql.with_status(conn, Status.QUEUED.value, limit)]

    def recover(self) -> list[str]:
        """After a restart: re-queue or fail what was rendering, and list every queued project
        (oldest first) for the workers."""
        failed: list[Transition] = []
        with self.db.write() as conn:
            for row in sql.with_status(conn, Status.RENDERING.value):
                if row.attempts < self.max_attempts:
                    sql.move(conn, row.id, from_=ACTIVE, status=Status.QUEUED.value)
                else:
                    full = sql.get_project(conn, row.id)
                    assert full is not None
                    ended = self._end(
                        conn,
                        full,
                        Status.ERROR,
                        "worker_lost",
                        f"rendering was interrupted {row.attempts} times by a server restart",
                        note="refund: worker_lost",
                    )
                    if ended is not None:
                        failed.append(ended)
            queued = [row.id for row in sql.with_status(conn, Status.QUEUED.value)]
        for ended in failed:
            self.outputs.delete_project(ended.project)
            self._changed(ended)
        return queued

    def _end(
        self,
        conn: Connection,
        row: Row,  # type: ignore[type-arg]
        status: Status,
        code: str | None,
        message: str | None,
        *,
        note: str,
    ) -> Transition | None:
        """Move an active project to a terminal status with a refund, recording the change;
        None if it had already ended."""
        moved = sql.move(
            conn,
            row.id,
            from_=ACTIVE,
            status=status.value,
            error_code=code,
            error_message=message,
            credits_charged=0,
            completed_at=utcnow(),
            status_note=None,
        )
        if not moved:
            return None
        refunded = credits.refund_in(conn, row.account_id, row.id, note)
        return self._record(conn, row.id, Status(row.status), refunded)
