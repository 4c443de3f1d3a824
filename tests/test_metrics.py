"""``GET /metrics`` over real HTTP, parsed with prometheus_client's own parser: requests by route
template and status, jobs by status and model, credits, render times, the queue, webhooks."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import darkroom
from darkroom.engine.base import RenderRequest
from darkroom.engine.preview import PreviewBackend
from darkroom.engine.registry import Backends
from tests.backends import Failing, Slow
from tests.conftest import LiveServer, ServerFactory
from tests.waiting import wait_until
from tests.webhook_receiver import Receiver

CREATE = "/v1/ai-image-generator"
PROJECT = "/v1/image-projects/{project_id}"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(server: LiveServer, accept: str | None = None) -> Samples:
    headers = {"accept": accept} if accept else {}
    response = httpx.get(f"{server.url}/metrics", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


class FailsOnRequest:
    """The preview backend, except that prompts containing "fail" meet the Failing backend."""

    name = "preview"
    edits = True

    def __init__(self) -> None:
        self.preview = PreviewBackend()

    def render(self, request: RenderRequest) -> list[bytes]:
        if "fail" in request.user_prompt:
            return Failing().render(request)
        return self.preview.render(request)


def test_requests_jobs_credits_and_render_times_are_counted(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(Backends([FailsOnRequest()]))
    account = server.account()
    good = {
        "image_count": 2,
        "model": "flux-schnell",
        "resolution": "640px",
        "style": {"prompt": "a lighthouse"},
    }
    bad = {"image_count": 1, "model": "z-image-turbo", "style": {"prompt": "fail please"}}
    with server.client(account) as http:
        created = [http.post(CREATE, json=body).json() for body in (good, bad)]
        ended = [
            http.get(f"/v1/image-projects/{item['id']}", params={"wait": 30}).json()
            for item in created
        ]
        assert http.get("/v1/image-projects/img_nosuchproject").status_code == 404
        assert http.get("/no/such/path", params={"token": "x"}).status_code == 404
    with server.client() as anonymous:
        assert anonymous.post(CREATE, json=good).status_code == 401
    assert [project["status"] for project in ended] == ["complete", "error"]
    charged = [item["credits_charged"] for item in created]
    assert min(charged) > 0

    samples = scrape(server)
    requests = "darkroom_http_requests_total"
    assert value(samples, requests, method="POST", route=CREATE, status="200") == 2
    assert value(samples, requests, method="POST", route=CREATE, status="401") == 1
    assert value(samples, requests, method="GET", route=PROJECT, status="200") == 2
    assert value(samples, requests, method="GET", route=PROJECT, status="404") == 1
    assert value(samples, requests, method="GET", route="unmatched", status="404") == 1
    routes = {dict(labels).get("route", "") for _, labels in samples}
    assert not any("img_" in route or "/no/such" in route for route in routes)
    duration = "darkroom_http_request_duration_seconds_count"
    assert value(samples, duration, method="POST", route=CREATE) == 3

    jobs = "darkroom_jobs_total"
    for status in ("queued", "rendering", "complete"):
        assert value(samples, jobs, status=status, model="flux-schnell") == 1
    for status in ("queued", "rendering", "error"):
        assert value(samples, jobs, status=status, model="z-image-turbo") == 1
    assert value(samples, jobs, status="error", model="flux-schnell") is None
    assert value(samples, jobs, status="complete", model="z-image-turbo") is None

    assert value(samples, "darkroom_charged_credits_total", model="flux-schnell") == charged[0]
    assert value(samples, "darkroom_charged_credits_total", model="z-image-turbo") == charged[1]
    assert value(samples, "darkroom_refunded_credits_total", model="z-image-turbo") == charged[1]
    assert value(samples, "darkroom_refunded_credits_total", model="flux-schnell") is None
    assert server.balance(account) == 10_000 - charged[0]

    render = "darkroom_image_render_duration_seconds"
    flux = {"model": "flux-schnell", "backend": "preview"}
    assert value(samples, f"{render}_count", **flux) == 2  # one per image
    assert value(samples, f"{render}_sum", **flux) == pytest.approx(ended[0]["render_ms"] / 1000)
    assert value(samples, f"{render}_count", model="z-image-turbo", backend="preview") is None

    assert value(samples, "darkroom_queue_depth", model="flux-schnell") == 0
    for status in ("queued", "rendering"):
        assert value(samples, "darkroom_jobs_active", status=status, model="flux-schnell") == 0


def test_names_follow_prometheus_rules_with_build_process_and_python_metrics(
    server: LiveServer,
) -> None:
    response = httpx.get(f"{server.url}/metrics")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    [build] = families["darkroom_build_info"].samples
    assert (build.name, build.labels, build.value) == (
        "darkroom_build_info",
        {"version": darkroom.__version__},
        1.0,
    )
    for name in ("process_resident_memory_bytes", "process_cpu_seconds", "python_info"):
        assert name in families, name
    assert "python_gc_collections" in families
    names = {sample.name for family in families.values() for sample in family.samples}
    assert not [name for name in names if name.endswith("_created")]
    for name in names:
        if name.startswith("darkroom_") and "seconds" in name:  # the unit is the last word
            assert (
                name.removesuffix("_bucket")
                .removesuffix("_count")
                .removesuffix("_sum")
                .endswith("_seconds")
            ), name


def test_queue_depth_and_active_jobs_are_read_at_scrape_time(
    server_factory: ServerFactory,
) -> None:
    slow = Slow()
    server = server_factory(Backends([slow]), workers=1)
    account = server.account()
    body = {"image_count": 1, "model": "flux-schnell", "style": {"prompt": "x"}}
    with server.client(account) as http:
        ids = [http.post(CREATE, json=body).json()["id"] for _ in range(3)]
        assert slow.entered.wait(10)
        busy = scrape(server)
        slow.release.set()
        for project_id in ids:
            answer = http.get(f"/v1/image-projects/{project_id}", params={"wait": 30})
            assert answer.json()["status"] == "complete"
    idle = scrape(server)

    assert value(busy, "darkroom_queue_depth", model="flux-schnell") == 2
    assert value(busy, "darkroom_queue_depth", model="z-image-turbo") == 0
    assert value(busy, "darkroom_jobs_active", status="queued", model="flux-schnell") == 2
    assert value(busy, "darkroom_jobs_active", status="rendering", model="flux-schnell") == 1
    assert value(busy, "darkroom_jobs_active", status="queued", model="z-image-turbo") == 0
    assert value(idle, "darkroom_queue_depth", model="flux-schnell") == 0
    for status in ("queued", "rendering"):
        assert value(idle, "darkroom_jobs_active", status=status, model="flux-schnell") == 0
    assert value(idle, "darkroom_jobs_total", status="complete", model="flux-schnell") == 3


def test_queue_depth_by_model_is_the_databases_and_the_same_on_every_node(
    server_factory: ServerFactory,
) -> None:
    # Two API-only nodes on one database (the same data directory): what a worker pool is
    # scaled on must not depend on which node Prometheus scraped.
    first = server_factory(workers=0)
    second = server_factory(workers=0)
    account = first.account()
    with first.client(account) as http:
        for model in ("flux-schnell", "flux-schnell", "z-image-turbo"):
            body = {"image_count": 1, "model": model, "style": {"prompt": "x"}}
            assert http.post(CREATE, json=body).status_code == 200
    models = first.services.catalog.models
    for node in (first, second):
        samples = scrape(node)
        depth = {model: value(samples, "darkroom_queue_depth", model=model) for model in models}
        assert depth == {
            model: {"flux-schnell": 2, "z-image-turbo": 1}.get(model, 0) for model in models
        }


def test_openmetrics_is_served_to_scrapers_that_ask_for_it(server: LiveServer) -> None:
    response = httpx.get(
        f"{server.url}/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")
    assert 'darkroom_queue_depth{model="flux-schnell"} 0.0' in response.text


def test_webhook_attempts_are_counted_by_event_and_outcome(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(webhook_retry_seconds=0.05)
    account = server.account()
    receiver = Receiver(fail_first=1)
    try:
        with server.client(account) as http:
            hook = http.post(
                "/v1/webhooks", json={"url": receiver.url, "events": ["image.completed"]}
            )
            assert hook.status_code == 201, hook.text
            receiver.secret = hook.json()["secret"]
            body = {"image_count": 1, "style": {"prompt": "x"}}
            project_id = http.post(CREATE, json=body).json()["id"]
        receiver.wait_for(1, "image.completed")
        deliveries = "darkroom_webhook_delivery_attempts_total"
        event = "image.completed"
        samples = scraped_once(
            server, lambda s: value(s, deliveries, event=event, outcome="delivered") == 1
        )
    finally:
        receiver.close()
    assert receiver.accepted()[0].event["payload"]["id"] == project_id
    assert value(samples, deliveries, event=event, outcome="failed_attempt") == 1
    assert value(samples, deliveries, event=event, outcome="gave_up") is None

    with pytest.raises(ValueError, match="outcome"):
        server.services.metrics.webhook_attempt(event, "lost")


def scraped_once(server: LiveServer, done: Any, timeout: float = 10) -> Samples:
    """The first scrape for which ``done(samples)`` (what is counted after an answer may lag
    behind it)."""

    def scraped() -> Samples | None:
        samples = scrape(server)
        return samples if done(samples) else None

    return wait_until(scraped, "the scrape to show it", timeout=timeout)
