"""Does a crowd of long polls slow the server down? ``GET /healthz`` latency with N long polls
(``GET /v1/image-projects/{id}?wait=30``) open against one server, beside the same measurement
with none open, in one run.

Starts ``darkroom serve --workers 0`` (an API-only node: the projects stay queued, so every long
poll waits its full 30 s) on a temporary data directory, creates N projects, opens one long poll
on each, and times ``/healthz`` one request at a time from another connection while they wait.

Run from the repository root::

    .venv/bin/python benchmarks/long_poll_load.py            # 500 long polls
    .venv/bin/python benchmarks/long_poll_load.py --polls 100

Only 127.0.0.1 is used. Client and server share the machine's CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time

import httpx

from wait_overhead import percentile, served

BODY = {"image_count": 1, "model": "flux-schnell", "resolution": "640px", "style": {"prompt": "x"}}
WAIT = 30.0


def healthz_latencies(url: str, count: int) -> list[float]:
    """``count`` sequential /healthz requests on one keep-alive connection, 20 ms apart (ms).
    Run on a thread of its own, so that the long polls' client loop does not delay it."""
    latencies = []
    with httpx.Client(base_url=url, timeout=10) as client:
        for _ in range(count):
            started = time.perf_counter()
            response = client.get("/healthz")
            latencies.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
            time.sleep(0.02)
    return latencies


def line(label: str, values: list[float]) -> str:
    p50, p99 = statistics.median(values), percentile(values, 0.99)
    return f"  {label:<44} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   max {max(values):7.2f} ms"


async def run(url: str, key: str, polls: int, samples: int) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=polls + 10, max_keepalive_connections=polls + 10)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=WAIT + 30, limits=limits
    ) as client:
        idle = await asyncio.to_thread(healthz_latencies, url, samples)
        ids: list[str] = []
        for start in range(0, polls, 50):
            batch = range(start, min(start + 50, polls))
            created = await asyncio.gather(
                *(client.post("/v1/ai-image-generator", json=BODY) for _ in batch)
            )
            ids += [answer.json()["id"] for answer in created]

        async def long_poll(project_id: str) -> tuple[float, httpx.Response]:
            started = time.monotonic()
            path = f"/v1/image-projects/{project_id}"
            response = await client.get(path, params={"wait": WAIT})
            return time.monotonic() - started, response

        waits = asyncio.gather(*(long_poll(project_id) for project_id in ids))
        await asyncio.sleep(5)  # let every long poll reach the server
        loaded = await asyncio.to_thread(healthz_latencies, url, samples)
        answers = await waits
    held = [seconds for seconds, _ in answers]
    statuses = {response.json()["status"] for _, response in answers}
    print(f"darkroom long-poll load: {polls} long polls, python {platform.python_version()}")
    print(line("GET /healthz, no long poll open", idle))
    print(line(f"GET /healthz, {polls} long polls open", loaded))
    print(
        f"  each long poll (wait={WAIT:g}) answered after {min(held):.1f} .. {max(held):.1f} s, "
        f"with status {sorted(statuses)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--polls", type=int, default=500, help="long polls held open (500)")
    parser.add_argument("--samples", type=int, default=400, help="/healthz requests timed (400)")
    args = parser.parse_args(argv)
    with served("--workers", "0") as (url, key):
        asyncio.run(run(url, key, args.polls, args.samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
