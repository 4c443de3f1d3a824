"""darkroom's Prometheus metrics, in a registry of their own (one per server, so that several
servers can run in one process), named by Prometheus' rules: ``darkroom_`` first, the unit last
(``_seconds``, ``_credits``), ``_total`` on counters. With them: ``darkroom_build_info`` (the
version), and the process, platform and garbage collector metrics of the Python client
(``process_*``, ``python_*``). Counters and histograms leave out their ``_created`` series.

Counted as things happen: HTTP requests (by the middleware, :meth:`Metrics.request`), status
changes of projects (as a ``Jobs`` observer, :meth:`Metrics.observe`) and webhook delivery
attempts (by the webhook sender, :meth:`Metrics.webhook_attempt`). Read at scrape time, from
the database (so every node that shares it says the same): the queued and rendering projects by
model, and the queue's depth by model, with one ``GROUP BY`` on the projects'
``(status, created_at)`` index for both.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from darkroom import __version__
from darkroom.core.projects import Transition
from darkroom.core.status import ACTIVE, Status
from darkroom.store import projects as project_sql
from darkroom.store.database import Database

log = logging.getLogger("darkroom.metrics")

# Seconds, from the preview backend's milliseconds to a large GPU image (and a long poll).
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)

WEBHOOK_OUTCOMES = ("delivered", "failed_attempt", "gave_up")

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    def __init__(self, db: Database, models: Iterable[str]) -> None:
        # The _created series (a timestamp per counter and histogram child) would double the
        # output for nothing a dashboard reads; the setting is the Python client's, global.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        r = self.registry
        Info("darkroom_build", "The darkroom version that runs", registry=r).info(
            {"version": __version__}
        )
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.requests = Counter(
            "darkroom_http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "darkroom_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response (long polls included)",
            ["method", "route"],
            buckets=SECONDS,
            registry=r,
        )
        self.jobs = Counter(
            "darkroom_jobs",
            "Projects that reached each status (queued: created and charged), by model",
            ["status", "model"],
            registry=r,
        )
        self.render_seconds = Histogram(
            "darkroom_image_render_duration_seconds",
            "Render time of a completed project divided by its image count, once per image",
            ["model", "backend"],
            buckets=SECONDS,
            registry=r,
        )
        self.charged = Counter(
            "darkroom_charged_credits", "Credits charged for new projects", ["model"], registry=r
        )
        self.refunded = Counter(
            "darkroom_refunded_credits",
            "Credits refunded (failed and canceled projects)",
            ["model"],
            registry=r,
        )
        self.webhooks = Counter(
            "darkroom_webhook_delivery_attempts",
            "Webhook delivery attempts by event and outcome "
            "(delivered, failed_attempt: will be retried, gave_up: no more retries)",
            ["event", "outcome"],
            registry=r,
        )
        r.register(_ActiveProjects(db, list(models)))

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered HTTP request; ``route`` is a route template, never a raw path."""
        method = method if method in METHODS else "OTHER"
        self.requests.labels(method, route, str(status)).inc()
        self.request_seconds.labels(method, route).observe(seconds)

    def observe(self, change: Transition) -> None:
        """A ``Jobs`` observer: count a committed status change of a project."""
        project = change.project
        if change.previous is None:
            self.jobs.labels(Status.QUEUED.value, project.model).inc()
            self.charged.labels(project.model).inc(project.credits_charged)
            return
        self.jobs.labels(project.status.value, project.model).inc()
        if change.refunded:
            self.refunded.labels(project.model).inc(change.refunded)
        if project.status is Status.COMPLETE and project.render_ms is not None:
            per_image = project.render_ms / 1000 / max(project.image_count, 1)
            histogram = self.render_seconds.labels(project.model, project.backend)
            for _ in range(project.image_count):
                histogram.observe(per_image)

    def webhook_attempt(self, event: str, outcome: str) -> None:
        """Count one webhook delivery attempt (for the webhook sender to call after each).

        ``event`` is the event type (``image.completed``...); ``outcome`` is ``delivered`` (a
        2xx answer), ``failed_attempt`` (no 2xx answer or a timeout; the delivery will be
        retried) or ``gave_up`` (that failed attempt was the last: the delivery is abandoned).
        A delivery that fails three times and then succeeds counts 3 ``failed_attempt`` and 1
        ``delivered``; one that never succeeds ends with a ``gave_up`` instead of its last
        ``failed_attempt``.
        """
        if outcome not in WEBHOOK_OUTCOMES:
            raise ValueError(f"webhook outcome must be one of {WEBHOOK_OUTCOMES}, not {outcome!r}")
        self.webhooks.labels(event, outcome).inc()

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The metrics in the format the scraper's ``Accept`` header asks for (Prometheus text
        or OpenMetrics), and its content type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class _ActiveProjects(Collector):
    """What the database holds now (all processes sharing it), 0 for the catalog's models that
    have none:

    - ``darkroom_jobs_active{status, model}``: queued and rendering projects;
    - ``darkroom_queue_depth{model}``: the queued ones, waiting for a worker. What a worker pool
      is scaled on (the Helm chart's KEDA trigger: ``max`` across the API nodes, which all say
      the same, summed over the pool's models).
    """

    def __init__(self, db: Database, models: list[str]) -> None:
        self.db = db
        self.models = models

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        counts = {(status, model): 0 for status in ACTIVE for model in self.models}
        try:
            with self.db.read() as conn:
                for status, model, count in project_sql.count_by_status_and_model(conn, ACTIVE):
                    counts[(status, model)] = count
        except Exception as exc:  # the scrape goes on without them; /readyz says why
            log.warning(
                "darkroom_jobs_active and darkroom_queue_depth left out: database unreachable (%s)",
                type(exc).__name__,
            )
            return
        active, depth = self._families()
        for (status, model), count in sorted(counts.items()):
            active.add_metric([status, model], count)
            if status == Status.QUEUED.value:
                depth.add_metric([model], count)
        yield active
        yield depth

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        active = GaugeMetricFamily(
            "darkroom_jobs_active",
            "Queued and rendering projects in the database, by model",
            labels=["status", "model"],
        )
        depth = GaugeMetricFamily(
            "darkroom_queue_depth",
            "Projects waiting to be rendered, by model (the database's: the same on every node)",
            labels=["model"],
        )
        return active, depth
