"""A node and its heartbeat: every darkroom process registers itself in the ``nodes`` table and
beats every third of the lease, on a thread of its own. Other nodes read the beats to tell a live
node from a dead one; the same thread renews this node's job leases and sweeps for the jobs and
waiters of dead nodes (the ``tasks``), so that a slow event loop never costs a lease.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from darkroom.store import nodes as node_sql
from darkroom.store.database import Database, is_transient, utcnow

log = logging.getLogger("darkroom.heartbeat")

# A gone node's row is kept this long (operators can see what ran), then deleted.
NODE_ROWS_KEPT = timedelta(days=1)

Task = Callable[[datetime], object]  # what it returns is ignored


@dataclass(frozen=True)
class Node:
    """This process as the cluster sees it."""

    id: str
    kind: str  # "embedded" (API and workers), "api" (no workers) or "worker" (no API)
    models: list[str] | None = None  # what its workers take (None: every model)
    concurrency: int = 0  # jobs rendered at once
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)


class Heartbeat:
    def __init__(
        self, db: Database, node: Node, lease_seconds: float, tasks: Sequence[Task] = ()
    ) -> None:
        """``tasks`` run after each beat, in order, each with the beat's time."""
        self.db = db
        self.node = node
        self.interval = lease_seconds / 3
        self.tasks = tuple(tasks)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.beats = 0  # completed beats

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        now = utcnow()
        row = {
            "id": self.node.id,
            "kind": self.node.kind,
            "host": self.node.host[:200],
            "pid": self.node.pid,
            "models": None if self.node.models is None else json.dumps(self.node.models),
            "concurrency": self.node.concurrency,
            "started_at": now,
            "heartbeat_at": now,
            "stopped_at": None,
        }
        forget_before = now - NODE_ROWS_KEPT
        self.db.transact(lambda conn: node_sql.register(conn, row, forget_before))
        self._stop.clear()
        self.beat()  # a first sweep at once: a restart takes over what the dead left
        self._thread = threading.Thread(target=self._run, name="darkroom-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and say so, so that the others need not wait for the lease."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        try:
            self.db.transact(lambda conn: node_sql.stop(conn, self.node.id, utcnow()))
        except Exception:
            log.exception("could not mark node %s stopped", self.node.id)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        """Renew this node's heartbeat, then run the tasks; no error stops the beating."""
        now = utcnow()
        try:
            self.db.transact(lambda conn: node_sql.beat(conn, self.node.id, now), durable=False)
        except Exception as exc:
            log.warning("heartbeat of node %s failed", self.node.id, exc_info=not is_transient(exc))
            return
        for task in self.tasks:
            try:
                task(now)
            except Exception as exc:
                log.warning(
                    "heartbeat task %s failed",
                    getattr(task, "__qualname__", task),
                    exc_info=not is_transient(exc),
                )
        self.beats += 1
