"""How soon a caller learns that a project is done: a webhook against polling, and what the
webhook outbox costs the create path, side by side in one run.

Starts ``darkroom serve`` (SQLite, the preview backend) in a temporary data directory with a
webhook receiver on loopback, and for ``N`` sequential one-image projects measures:

1. **webhook**: from the project's ``completed_at`` (the server's clock) to the receiver getting
   the signed ``image.completed`` POST;
2. **polling**: what a client polling ``GET /v1/image-projects/{id}`` every 0.5 s (the published
   SDK's default) would see: modelled as the delay to its next poll, uniform in [0, 0.5 s), plus
   one measured GET;

and the time for ``N`` projects, created 8 at a time, to all complete with 4 webhook endpoints
registered against none (each status change then writes 4 deliveries in its transaction, and
the sender posts them while the workers render), interleaved over 3 rounds.

Run from the repository root::

    .venv/bin/python benchmarks/webhook_latency.py             # 60 projects, about 30 s
    .venv/bin/python benchmarks/webhook_latency.py --projects 20

Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from wait_overhead import percentile, served

BODY = {"image_count": 1, "resolution": "640px", "style": {"prompt": "a lighthouse at dusk"}}


class Receiver:
    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}  # project id → time.time() of its completed event
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                now = time.time()
                event = json.loads(body)
                if event["type"] == "image.completed":
                    with receiver.lock:
                        receiver.arrivals[event["payload"]["id"]] = now
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, project_id: str, timeout: float = 30) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if project_id in self.arrivals:
                    return self.arrivals[project_id]
            time.sleep(0.001)
        raise SystemExit(f"no webhook for {project_id}")


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def batch(client: httpx.Client, count: int) -> float:
    """Seconds until ``count`` projects, created 8 at a time, have all completed."""
    started = time.perf_counter()

    def one(_: int) -> None:
        answer = client.post("/v1/ai-image-generator", json=BODY)
        assert answer.status_code == 200, answer.text
        project_id = answer.json()["id"]
        while True:
            path = f"/v1/image-projects/{project_id}"
            project = client.get(path, params={"wait": 30, "since": "rendering"}).json()
            if project["status"] == "complete":
                return
            assert project["status"] in ("queued", "rendering"), project

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))
    return time.perf_counter() - started


def endpoints(client: httpx.Client, url: str, count: int) -> None:
    """Leave exactly ``count`` webhook endpoints on the account."""
    for item in client.get("/v1/webhooks").json()["data"]:
        client.delete(f"/v1/webhooks/{item['id']}")
    for n in range(count):
        assert client.post("/v1/webhooks", json={"url": f"{url}?n={n}"}).status_code == 201


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=60)
    args = parser.parse_args(argv)
    receiver = Receiver()
    try:
        with (
            served() as (url, key),
            httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60
            ) as client,
        ):
            hook = client.post("/v1/webhooks", json={"url": receiver.url})
            assert hook.status_code == 201, hook.text
            webhook, poll = [], []
            for _ in range(args.projects + 1):  # the first one warms up
                project_id = client.post("/v1/ai-image-generator", json=BODY).json()["id"]
                arrived = receiver.wait_for(project_id)
                started = time.perf_counter()
                project = client.get(f"/v1/image-projects/{project_id}").json()
                get_ms = (time.perf_counter() - started) * 1000
                webhook.append((arrived - seconds(project["completed_at"])) * 1000)
                poll.append(random.uniform(0, 500) + get_ms)
            webhook, poll = webhook[1:], poll[1:]

            timings: dict[str, list[float]] = {"4": [], "none": []}
            for _ in range(3):
                for label, count in (("4", 4), ("none", 0)):
                    endpoints(client, receiver.url, count)
                    timings[label].append(batch(client, args.projects))
    finally:
        receiver.server.shutdown()

    print(f"machine: {platform.processor() or platform.machine()}")
    print(f"{args.projects} sequential one-image projects (640x640, preview backend)")
    print()
    hook_p50, poll_p50 = statistics.median(webhook), statistics.median(poll)
    print("| How the caller learns the project is done | ms after completion p50 / p99 |")
    print("|---|---|")
    print(f"| webhook (signed POST) | {hook_p50:.1f} / {percentile(webhook, 0.99):.1f} |")
    print(f"| polling every 0.5 s (modelled) | {poll_p50:.1f} / {percentile(poll, 0.99):.1f} |")
    print()
    print(f"{args.projects} projects created 8 at a time, until all complete (3 rounds):")
    print("| webhook endpoints | seconds, median of 3 | projects/s |")
    print("|---|---|---|")
    for label, values in timings.items():
        middle = statistics.median(values)
        print(f"| {label} | {middle:.2f} | {args.projects / middle:.0f} |")
    print()
    print(f"polling / webhook latency (p50): {poll_p50 / hook_p50:.0f}x")
    ratio = statistics.median(timings["4"]) / statistics.median(timings["none"])
    print(f"time for the batch, 4 endpoints / none: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
