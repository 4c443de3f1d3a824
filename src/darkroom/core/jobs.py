"""Jobs, the caller's side: pricing a project, charging and queueing it, reading, canceling and
deleting it. The worker's side is :mod:`darkroom.core.work`; recovery from dead workers and gone
waiters is :mod:`darkroom.core.recovery`.

    queued ──claim──▶ rendering ──complete──▶ complete
       ▲  │              │ │ └────fail───────▶ error     (refunded)
       │  │              │ └──lease lost─┐
       │  └──cancel/delete┴──────────────┼──▶ canceled  (refunded)
       └─────────────────────────────────┘   (a new attempt, up to max_attempts)
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from darkroom.core import credits
from darkroom.core.accounts import Principal
from darkroom.core.catalog import Catalog, ImageSpec
from darkroom.core.errors import (
    DomainError,
    IdempotencyConflict,
    InvalidRequest,
    NotFound,
    QueueFull,
    StorageUnavailable,
)
from darkroom.core.events import JobEvents
from darkroom.core.ids import new_id
from darkroom.core.projects import MAX_SEED, PNG, Output, Project, Submission, Transition
from darkroom.core.request_ids import current_request_id
from darkroom.core.settle import end_in
from darkroom.core.status import Status
from darkroom.storage.files import ProjectFiles, quietly
from darkroom.storage.objects import StorageError
from darkroom.store import leases
from darkroom.store import nodes as node_sql
from darkroom.store import projects as sql
from darkroom.store.database import Database, utcnow

MAX_PAGE = 100  # projects in one page of the list


def _conflict() -> IdempotencyConflict:
    return IdempotencyConflict(
        "this Idempotency-Key was already used with a different request body"
    )


@dataclass(frozen=True)
class QueueLimits:
    """Backpressure: queued projects allowed per account and in all (0: no cap)."""

    per_account: int = 0
    total: int = 0


class Jobs:
    def __init__(
        self,
        db: Database,
        catalog: Catalog,
        events: JobEvents,
        files: ProjectFiles,
        *,
        node_id: str,
        limits: QueueLimits = QueueLimits(),
        lease_seconds: float = 15.0,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.events = events
        self.files = files
        self.node_id = node_id  # this process, recorded on projects its requests wait for
        self.limits = limits
        self.lease_seconds = lease_seconds

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
        options: Mapping[str, str] | None = None,
        request_id: str | None = None,
        awaited: bool = False,
    ) -> Submission:
        """Price and describe a project, or raise why it cannot be made; nothing is written.
        ``source_count`` source images (and a mask) must be stored under the submission's id
        before it is submitted. ``request_id`` defaults to the request being served.
        ``awaited``: a request of this process waits to hand the images over (the OpenAI
        dialect); should this process die first, the project is canceled and refunded.
        ``options``: what the caller asked of a vendor beyond the prompt (OpenAI's
        ``moderation``, ``input_fidelity``), passed to the backends whose upstream takes them."""
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
            "options": json.dumps(dict(options), sort_keys=True) if options else None,
            "request_id": request_id or current_request_id(),
            "lease_owner": None,
            "lease_until": None,
            "awaited_by": self.node_id if awaited else None,
            "answer_pending": awaited,
        }
        return Submission(row)

    def submit_many(self, items: list[Submission]) -> list[Project | DomainError]:
        """Charge and persist prepared projects in one transaction (one commit for many
        concurrent creates), then queue them. Each item gets its own outcome: its project, or
        the error that refused it alone (402, an Idempotency-Key conflict). With an
        Idempotency-Key, a repeat of an earlier request returns that project, charged once."""
        try:
            outcomes = self.db.transact(lambda conn: self.stage(conn, items))
        except IntegrityError:
            if len(items) == 1:
                # A concurrent request with the same idempotency key won the race (databases
                # that do not serialise writers); answer with its project.
                earlier = self.db.query(lambda conn: self._replay(conn, items[0]))
                if earlier is None:
                    raise
                return [earlier]
            return [self.submit_many([item])[0] for item in items]
        self.publish(items, outcomes)
        return outcomes

    def publish(self, items: list[Submission], outcomes: list[Project | DomainError]) -> None:
        """Report the projects created by a committed :meth:`stage` (the workers were woken by
        its commit)."""
        for item, outcome in zip(items, outcomes, strict=True):
            if isinstance(outcome, Project) and outcome.id == item.id:
                self.events.committed(Transition(outcome, None))

    def stage(self, conn: Connection, items: list[Submission]) -> list[Project | DomainError]:
        """The writes of :meth:`submit_many`, in the caller's write transaction; once it has
        committed, :meth:`publish` queues the new projects."""
        outcomes: list[Project | DomainError | None] = [None] * len(items)
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
        fresh = self._within_limits(conn, items, fresh, outcomes)
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
        for model in sorted({row["model"] for row in charged}):
            self.events.job_ready(conn, model)
        for i, item in enumerate(items):
            if outcomes[i] is None:  # a repeat of an Idempotency-Key used earlier in this batch
                assert item.idempotency_key is not None
                first = first_with_key[(item.account_id, item.idempotency_key)]
                same = items[first].request_hash == item.request_hash
                outcomes[i] = outcomes[first] if same else _conflict()
        return [o for o in outcomes if o is not None]

    def _within_limits(
        self,
        conn: Connection,
        items: list[Submission],
        fresh: list[int],
        outcomes: list[Project | DomainError | None],
    ) -> list[int]:
        """The items of ``fresh`` that the queue caps admit; the others get :class:`QueueFull`
        (nothing is charged for them)."""
        limits = self.limits
        if not fresh or (limits.per_account <= 0 and limits.total <= 0):
            return fresh
        accounts = sorted({items[i].account_id for i in fresh})
        total, per_account = leases.queued_counts(conn, accounts)
        waits: dict[str, float] = {}  # Retry-After by model, read once a batch

        def retry_after(item: Submission) -> float:
            model = item.row["model"]
            if model not in waits:
                mean_ms = leases.mean_render_ms(conn, model)
                waits[model] = max(1.0, math.ceil((mean_ms or 10_000.0) / 1000.0))
            return waits[model]

        admitted = []
        for i in fresh:
            account = items[i].account_id
            mine = per_account.get(account, 0)
            if limits.total > 0 and total >= limits.total:
                outcomes[i] = QueueFull(
                    f"the render queue is full ({limits.total} projects waiting); retry later",
                    retry_after=retry_after(items[i]),
                )
            elif limits.per_account > 0 and mine >= limits.per_account:
                outcomes[i] = QueueFull(
                    f"this account already has {mine} projects waiting (the limit is "
                    f"{limits.per_account}); retry once some have rendered",
                    retry_after=retry_after(items[i]),
                )
            else:
                admitted.append(i)
                total += 1
                per_account[account] = mine + 1
        return admitted

    def queue_depth(self) -> int:
        """Projects waiting to be rendered, on every node."""
        return self.db.query(leases.queued_total)

    def queue_place(self, project: Project) -> tuple[int, float | None] | None:
        """For a queued project: its place in the queue (1: next) and an estimate of the
        seconds until it is rendered (None while no worker that serves it is alive)."""
        if project.status is not Status.QUEUED:
            return None

        def read(conn: Connection) -> tuple[int, float | None]:
            ahead = leases.queue_ahead(conn, project.id, project.account_id, project.created_at)
            slots = sum(
                node.concurrency
                for node in node_sql.live(conn, self.lease_seconds)
                if node.concurrency
                and (node.models is None or project.model in json.loads(node.models))
            )
            if not slots:
                return ahead + 1, None
            mean_ms = leases.mean_render_ms(conn, project.model) or 0.0
            rounds = math.floor(ahead / slots) + 1
            return ahead + 1, round(rounds * mean_ms / 1000.0, 1)

        return self.db.query(read)

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
        row = self.db.query(lambda conn: sql.get_project(conn, project_id))
        if row is None or row.account_id != account_id or not row.enabled:
            raise NotFound()
        return Project.from_row(row)

    def page(
        self,
        account_id: str,
        *,
        limit: int = 20,
        before: str | None = None,
        status: Status | None = None,
    ) -> tuple[list[Project], bool]:
        """The account's projects, newest first, ``limit`` at a time: those older than the
        project ``before`` (the last of the previous page) when given; and whether there are
        more."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}", field="limit")

        def work(conn: Connection) -> list[Any]:
            cursor = None
            if before is not None:
                row = sql.get_project(conn, before)
                if row is None or row.account_id != account_id:
                    raise InvalidRequest(
                        "before must be the id of one of your projects", field="before"
                    )
                cursor = (row.created_at, row.id)
            return sql.page_of(
                conn,
                account_id,
                limit=limit + 1,
                before=cursor,
                status=None if status is None else status.value,
            )

        rows = self.db.query(work)
        return [Project.from_row(row) for row in rows[:limit]], len(rows) > limit

    def delete(self, account_id: str, project_id: str) -> None:
        """Delete a project and its images; one still queued or rendering is canceled first and
        refunded."""

        def work(conn: Connection) -> tuple[Project, Transition | None]:
            row = sql.get_project(conn, project_id)
            if row is None or row.account_id != account_id or not row.enabled:
                raise NotFound()
            ended = end_in(
                conn, self.events, row, Status.CANCELED, None, None, note="canceled by delete"
            )
            sql.disable(conn, project_id)
            return Project.from_row(row), ended

        project, ended = self.db.transact(work)
        # The links stop working now (they are checked against the project); then the objects go.
        quietly(lambda: self.files.delete_project(project))
        if ended is not None:
            self.events.committed(ended)

    def keep_sources(self, project_id: str, images: list[bytes], mask: bytes | None) -> None:
        """Store the source images of an edit (before it is queued) for its worker."""
        try:
            self.files.save_sources(project_id, images, mask)
        except StorageError:
            self.discard_sources(project_id, len(images))
            raise StorageUnavailable() from None

    def discard_sources(self, project_id: str, count: int) -> None:
        """Remove the source images of an edit that was not queued after all."""
        quietly(lambda: self.files.delete_sources(project_id, count))

    def answered(self, project_id: str) -> bool:
        """This node's request that waited for the complete project (``awaited``) has written
        its answer: the project is delivered, so recovery leaves it charged should this node die
        now, and its ``image.completed`` webhook (held until now) is written. False if it was
        not this node's to deliver any more (refunded meanwhile: this node was taken for
        dead)."""

        def work(conn: Connection) -> bool:
            if not leases.answered(conn, project_id, self.node_id):
                return False
            self.events.record(conn, project_id, Status.COMPLETE)
            return True

        return self.db.transact(work)

    def cancel(self, account_id: str, project_id: str, note: str) -> Project:
        """queued/rendering → canceled with a full refund (a worker rendering it discards its
        images); a project that had already ended is returned as it is."""

        def work(conn: Connection) -> tuple[Project, Transition | None]:
            row = sql.get_project(conn, project_id)
            if row is None or row.account_id != account_id or not row.enabled:
                raise NotFound()
            ended = end_in(conn, self.events, row, Status.CANCELED, None, None, note=note)
            return Project.from_row(row), ended

        project, ended = self.db.transact(work)
        if ended is None:
            return project
        # What its worker writes after this, it removes itself when its end is refused.
        quietly(lambda: self.files.delete_project(ended.project))
        self.events.committed(ended)
        return ended.project
