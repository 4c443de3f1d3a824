"""Whether this process is ready to serve (``/readyz``): the database and the image storage
answer, and the node beside the API (its render workers, webhook sender and heartbeat) runs.

The node is the process's own (:mod:`darkroom.node`); the core knows it only as a
:class:`RunningNode`, so that the API that asks imports no worker.
"""

from __future__ import annotations

from typing import Any, Protocol

from darkroom.core.downloads import Downloads
from darkroom.store import leases
from darkroom.store.database import Database, ping

# The checks that must hold for a ready answer.
REQUIRED = ("workers", "database", "storage", "webhooks", "heartbeat")


class RunningNode(Protocol):
    """The node of this process, as the API starts, stops and reports on it."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def report(self) -> dict[str, Any]:
        """``workers``, ``webhooks`` and ``heartbeat`` (whether each runs), ``backends``,
        ``notifications`` and ``node`` (its id and kind)."""
        ...


def readiness(db: Database, downloads: Downloads, node: RunningNode) -> tuple[bool, dict[str, Any]]:
    """Whether the process is ready, and every check with what it found. Blocks (an
    unreachable database may take a while to say so): call it on a thread."""
    report = node.report()
    checks: dict[str, Any] = {"workers": report["workers"]}
    try:
        with db.read() as conn:
            ping(conn)
        checks["database"] = True
    except Exception as exc:
        checks["database"] = False
        checks["database_error"] = type(exc).__name__
    checks["webhooks"] = report["webhooks"]
    problem = downloads.storage_problem()
    checks["storage"] = problem is None
    checks["storage_location"] = downloads.files.store.location
    if problem is not None:
        checks["storage_error"] = problem
    for name in ("backends", "heartbeat", "notifications", "node"):
        checks[name] = report[name]
    if checks["database"]:
        checks["queue_depth"] = db.query(leases.queued_total)  # on every node
    return all(checks[name] for name in REQUIRED), checks
