"""How long a caller waits beyond the render itself: the OpenAI dialect's synchronous answer,
darkroom's SDK ``generate`` (long poll) and the published Magic Hour SDK's create-then-poll
``generate``, side by side in one run.

Starts ``darkroom serve`` (SQLite, the preview backend, two workers) in a temporary data
directory and sends, one request at a time (no queueing), ``N`` requests for one 640x640 image:

1. ``openai.OpenAI(...).images.generate(...)``: the server answers when the job ends (it is woken
   by the job's completion, not by polling);
2. ``darkroom.Client(...).v1.ai_image_generator.generate(..., download_outputs=False)``: the
   same call as 3 with one import changed; it waits with the long poll
   (``GET /v1/image-projects/{id}?wait=..&since=..``), answered when the status changes;
3. ``magic_hour.Client(...).v1.ai_image_generator.generate(..., download_outputs=False)``: the
   published SDK polls ``GET /v1/image-projects/{id}`` every ``MAGIC_HOUR_POLL_INTERVAL`` seconds
   (0.5 by default).

For each it prints the wall time per request and the overhead = wall time - ``render_ms`` (the
render as the worker measured it), p50 and p99, and the ratio of the two overheads.

Run from the repository root::

    .venv/bin/python benchmarks/wait_overhead.py            # 40 requests each, about 40 s
    .venv/bin/python benchmarks/wait_overhead.py --requests 10

Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

PROMPT = "a lighthouse at dusk over a calm sea"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(data_dir: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DARKROOM_RATE_LIMIT_PER_MINUTE": "0", "DARKROOM_LOG_LEVEL": "warning"}
    command = [
        sys.executable,
        "-m",
        "darkroom.cli.main",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        *extra,
    ]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("darkroom serve did not start")


@contextlib.contextmanager
def served(*extra: str) -> Iterator[tuple[str, str]]:
    """``darkroom serve`` (with ``extra`` arguments) on a temporary data directory for the
    block: its URL and API key."""
    with tempfile.TemporaryDirectory(prefix="darkroom-bench-") as tmp:
        data_dir = Path(tmp)
        port = free_port()
        server = start_server(data_dir, port, *extra)
        try:
            yield f"http://127.0.0.1:{port}", (data_dir / "dev-api-key").read_text().strip()
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(requests: int, one: Callable[[], tuple[float, int]]) -> tuple[list[float], list[float]]:
    """Wall times and overheads (ms) of ``requests`` calls of ``one`` (after one warm-up)."""
    one()
    walls, overheads = [], []
    for _ in range(requests):
        wall, render_ms = one()
        walls.append(wall)
        overheads.append(wall - render_ms)
    return walls, overheads


def summary(label: str, walls: list[float], overheads: list[float]) -> str:
    return (
        f"| {label} | {statistics.median(walls):.1f} / {percentile(walls, 0.99):.1f} | "
        f"{statistics.median(overheads):.1f} / {percentile(overheads, 0.99):.1f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args(argv)

    import magic_hour
    import openai

    import darkroom

    with served() as (url, key):
        oa = openai.OpenAI(base_url=f"{url}/v1", api_key=key)
        mh = magic_hour.Client(token=key, base_url=url)
        dk = darkroom.Client(token=key, base_url=url)

        def openai_call() -> tuple[float, int]:
            started = time.perf_counter()
            result = oa.images.generate(prompt=PROMPT, size="640x640", model="flux-schnell")
            wall = (time.perf_counter() - started) * 1000
            return wall, int((result.model_extra or {})["darkroom"]["render_ms"])

        def sdk_call(client: magic_hour.Client | darkroom.Client) -> tuple[float, int]:
            started = time.perf_counter()
            result = client.v1.ai_image_generator.generate(
                image_count=1,
                style={"prompt": PROMPT},
                model="flux-schnell",
                resolution="640px",
                download_outputs=False,
            )
            wall = (time.perf_counter() - started) * 1000
            with urllib.request.urlopen(
                urllib.request.Request(
                    f"{url}/v1/image-projects/{result.id}",
                    headers={"Authorization": f"Bearer {key}"},
                )
            ) as answer:
                render_ms = int(json.load(answer)["render_ms"])
            return wall, render_ms

        sync_walls, sync_over = measure(args.requests, openai_call)
        long_walls, long_over = measure(args.requests, lambda: sdk_call(dk))
        poll_walls, poll_over = measure(args.requests, lambda: sdk_call(mh))

    interval = os.environ.get("MAGIC_HOUR_POLL_INTERVAL", "0.5")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"{args.requests} sequential requests each, one 640x640 flux-schnell image (preview)")
    print()
    print("| Path | wall ms p50 / p99 | overhead beyond render ms p50 / p99 |")
    print("|---|---|---|")
    print(summary("OpenAI dialect, synchronous answer", sync_walls, sync_over))
    print(summary("darkroom SDK generate (long poll)", long_walls, long_over))
    print(summary(f"magic_hour SDK generate (polls every {interval} s)", poll_walls, poll_over))
    print()
    for label, over in (("synchronous", sync_over), ("darkroom SDK", long_over)):
        ratio = statistics.median(poll_over) / max(0.001, statistics.median(over))
        print(f"overhead ratio, magic_hour polling / {label} (p50): {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
