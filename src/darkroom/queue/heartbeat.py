"""A node and its heartbeat: every darkroom process registers itself in the ``nodes`` table and
beats every third of the lease, on a thread of its own. Other nodes read the beats to tell a live
node from a dead one; the same thread renews this node's job leases and sweeps for the jobs and
waiters of dead nodes (the ``tasks``), so that a slow event loop never costs a lease.

Beats are on the database's clock (``store/clock.py``), as is every lease. A node's own clock is
only compared with it: one that is off by more than a third of the lease (a broken NTP, a VM
restored from a snapshot) is logged as an error at start-up and at every beat, since whatever
else reads it (log lines, signed links' expiry, webhook timestamps) is off by as much.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection

from darkroom.store import clock
from darkroom.store import nodes as node_sql
from darkroom.store.database import Database, is_transient

log = logging.getLogger("darkroom.heartbeat")

# A gone node's row is kept this long in seconds (operators can see what ran), then deleted.
NODE_ROWS_KEPT = 24 * 3600.0

Task = Callable[[], object]  # what it returns is ignored


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
        """``tasks`` run after each beat, in order."""
        self.db = db
        self.node = node
        self.lease = lease_seconds
        self.interval = lease_seconds / 3
        # Seconds this node's clock was ahead of the database's at the last beat (behind:
        # negative); logged as an error beyond a third of the lease.
        self.skew: float | None = None
        self.tasks = tuple(tasks)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.beats = 0  # completed beats

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        row = {
            "id": self.node.id,
            "kind": self.node.kind,
            "host": self.node.host[:200],
            "pid": self.node.pid,
            "models": None if self.node.models is None else json.dumps(self.node.models),
            "concurrency": self.node.concurrency,
        }
        self.db.transact(lambda conn: node_sql.register(conn, row, NODE_ROWS_KEPT))
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
            self.db.transact(lambda conn: node_sql.stop(conn, self.node.id))
        except Exception:
            log.exception("could not mark node %s stopped", self.node.id)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        """Renew this node's heartbeat (and compare the clocks), then run the tasks; no error
        stops the beating."""
        try:
            self.skew = self.db.transact(self._beat, durable=False)
        except Exception as exc:
            log.warning("heartbeat of node %s failed", self.node.id, exc_info=not is_transient(exc))
            return
        if abs(self.skew) > self.lease / 3:
            log.error(
                "this node's clock is %.1f s %s the database's, more than a third of the %g s "
                "lease: leases and heartbeats follow the database's clock, but set this "
                "machine's time right (NTP)",
                abs(self.skew),
                "ahead of" if self.skew > 0 else "behind",
                self.lease,
            )
        for task in self.tasks:
            try:
                task()
            except Exception as exc:
                log.warning(
                    "heartbeat task %s failed",
                    getattr(task, "__qualname__", task),
                    exc_info=not is_transient(exc),
                )
        self.beats += 1

    def _beat(self, conn: Connection) -> float:
        node_sql.beat(conn, self.node.id)
        return clock.skew(conn)
