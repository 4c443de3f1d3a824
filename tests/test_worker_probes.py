"""A worker can be watched: ``darkroom worker --metrics-port`` answers ``/healthz``, ``/readyz``
and ``/metrics`` with the worker's own render and webhook metrics (an API node's ``/metrics``
never sees them: it renders and sends nothing)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import httpx

from tests.cluster import free_port
from tests.conftest import ServerFactory, current_databases
from tests.test_cli import DARKROOM
from tests.waiting import wait_until
from tests.webhook_receiver import Receiver


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of the sample ``name{labels...}`` in a Prometheus text exposition (0 if none)."""
    total = 0.0
    for line in metrics.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total += float(match.group(2))
    return total


def test_a_worker_answers_health_readiness_and_its_metrics(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    api = server_factory(data_dir=data, workers=0)  # renders nothing itself
    account = api.account()
    receiver = Receiver()
    port = free_port()
    env = {
        **os.environ,
        **current_databases().env(data),
        # The API node's database, images and secret (on SQLite too: one file, two processes).
        "DARKROOM_DATABASE_URL": api.settings.sqlalchemy_url,
        "DARKROOM_STORAGE_URL": api.settings.storage_url or str(data),
        "DARKROOM_SECRET_KEY": api.settings.secret_key,
        "DARKROOM_POLL_SECONDS": "0.2",
    }
    worker = subprocess.Popen(
        [*DARKROOM, "worker", "--metrics-port", str(port), "--data-dir", str(tmp_path / "w")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    probes = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    try:

        def answers() -> bool:
            try:
                return probes.get("/healthz").status_code == 200
            except httpx.TransportError:
                assert worker.poll() is None, worker.communicate()[0]
                return False

        wait_until(answers, "the worker's listener", timeout=60)
        ready = probes.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["node"]["kind"] == "worker"
        assert ready.json()["workers"] is True and ready.json()["webhooks"] is True

        with api.client(account) as client:
            hook = client.post("/v1/webhooks", json={"url": receiver.url})
            assert hook.status_code == 201, hook.text
            receiver.secret = hook.json()["secret"]
            body = {"image_count": 1, "model": "flux-schnell", "style": {"prompt": "watched"}}
            created = client.post("/v1/ai-image-generator", json=body)
            assert created.status_code == 200, created.text
        assert api.wait(account, created.json()["id"], timeout=60)["status"] == "complete"
        receiver.wait_for(1, "image.completed", timeout=60)

        def scraped() -> str | None:
            text = probes.get("/metrics").text
            delivered = sample(
                text, "darkroom_webhook_delivery_attempts_total", outcome="delivered"
            )
            return text if delivered >= 1 else None

        metrics = wait_until(scraped, "the delivery counted", timeout=30)
        rendered = sample(metrics, "darkroom_jobs_total", status="complete", model="flux-schnell")
        assert rendered == 1
        renders = sample(
            metrics, "darkroom_image_render_duration_seconds_count", model="flux-schnell"
        )
        assert renders == 1
        # The API node made the project but rendered and sent nothing: those are the worker's.
        with api.client() as client:
            on_api = client.get("/metrics").text
        assert sample(on_api, "darkroom_image_render_duration_seconds_count") == 0

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    finally:
        probes.close()
        receiver.close()
        if worker.poll() is None:
            worker.kill()
        output = worker.communicate(timeout=10)[0]
    assert f"health and metrics on http://127.0.0.1:{port}" in output, output
