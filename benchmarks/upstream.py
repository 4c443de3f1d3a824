"""Hosted models through vendors' APIs: what darkroom adds around an upstream that answers in a
fixed time, and how many projects it keeps in flight.

Starts fakes of OpenAI's Images API and Google's Gemini API in this process
(``tests/vendor_fakes.py``: uvicorn on loopback threads), each adding ``--latency`` seconds
(0.5) to every answer, and one ``darkroom serve --no-preview-only`` subprocess (SQLite, 2 render
workers, ``DARKROOM_UPSTREAM_CONCURRENCY`` as in this environment, default 16; rate limiting off,
log level warning) whose catalog override points gpt-image-2 at the OpenAI fake and nano-banana
at the Gemini fake, the keys in its environment under the names ``api_key_env`` gives. Three
cases, all 1k 1:1 (1024x1024, the size the fakes answer in: no resize): **gpt-image-2, 1 image**
(one call), **nano-banana, 1 image** (one call) and **nano-banana, 4 images** (4 calls at once:
Gemini makes one image per call). Every project has the same prompt. The fakes' images are flat
1024x1024 PNGs of 16 KB (a vendor's are 1-3 MB), so the CPU darkroom spends on each (decode,
check, PNG) is understated; the fakes' own drawing of them is cached (a vendor draws on its own
machines, not on darkroom's), and the backend's work on one is timed in this process at the start.

0. Warm-up: 2 projects per case, and 1 request of the OpenAI dialect. The request darkroom last
   sent to each fake is kept, to be replayed to the fake directly: the **upstream-only** time
   (the fake's latency, its own work and loopback HTTP, without darkroom).
1. **1 project at a time**: ``--projects`` (20) projects per case, created
   (``POST /v1/ai-image-generator``) and awaited with a long poll
   (``GET /v1/image-projects/{id}?wait=30``), one after another, every other one followed by
   the same call(s) sent to the fake directly (for 4 images: 4 calls at once). Reported:
   end-to-end seconds (the client's create sent → complete seen) p50 / p95 against the direct
   calls; darkroom's
   added ms (p50 of end-to-end minus p50 of the direct calls); and the split from the projects
   table: created_at → started_at (queue wait), started_at → rendered_at (the backend: calls,
   checks, fit, PNG), rendered_at → completed_at (store, commit), and what the client sees
   outside created → completed (the create request, the long poll's notice). For gpt-image-2 also
   the OpenAI dialect's synchronous ``POST /v1/images/generations`` (half as many, b64_json).
2. **32 concurrent projects**: per case, ``--rounds`` (2) rounds of 32 creates at once (one httpx
   asyncio client, each create followed by its long poll), timed from the first create sent to
   the last complete seen (median of the rounds); then the same 32 x calls sent to the fake
   directly at once. Reported: projects/s and images/s against the ideal with
   ``upstream_concurrency`` projects in flight (32 x latency / concurrency: 2 waves of 0.5 s at
   the default 16), the most projects rendering at once (projects table), and darkroom's CPU per
   project.

It prints the machine, the load average, then one table: figure, value, the ideal or
upstream-only value, and their ratio.

Run from the repository root::

    .venv/bin/python benchmarks/upstream.py            # about 105 s on a busy 2-core machine
    .venv/bin/python benchmarks/upstream.py --quick    # 8 projects one at a time, 1 round of 32

Only 127.0.0.1 is used; the client, the fakes (both in this process) and darkroom share the
machine's CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import shlex
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # tests/: the vendor fakes

import tests.vendor_fakes as vendor_fakes  # noqa: E402
from tests.vendor_fakes import FakeGemini, FakeOpenAI, FakeVendor, catalog_override  # noqa: E402

from api_overhead import (  # noqa: E402
    ProjectTimes,
    ServeProcess,
    load_average,
    new_event_loop,
    percentile,
    print_run_header,
    report_log_problems,
)

PROMPT = "a lighthouse at dusk over a calm sea, long exposure"
KEYS = {"OPENAI": "sk-bench-openai-0451", "GEMINI": "gm-bench-gemini-0451"}
CONCURRENT = 32
TERMINAL = ("complete", "error", "canceled")


@dataclass(frozen=True)
class Case:
    title: str
    model: str
    vendor: str  # which fake: openai or gemini
    images: int
    calls: int  # vendor calls per project


CASES = (
    Case("gpt-image-2, 1 image (OpenAI, 1 call)", "gpt-image-2", "openai", 1, 1),
    Case("nano-banana, 1 image (Gemini, 1 call)", "nano-banana", "gemini", 1, 1),
    Case("nano-banana, 4 images (Gemini, 4 calls at once)", "nano-banana", "gemini", 4, 4),
)


@dataclass
class Sequential:
    e2e: list[float] = field(default_factory=list)  # seconds, client-side
    direct: list[float] = field(default_factory=list)  # seconds, the same calls to the fake
    ids: list[str] = field(default_factory=list)
    times: list[ProjectTimes] = field(default_factory=list)


@dataclass
class Concurrent:
    took: list[float] = field(default_factory=list)  # per round: first create → last complete
    direct: list[float] = field(default_factory=list)  # per round: 32 x calls to the fake at once
    peak: list[int] = field(default_factory=list)  # projects rendering at once, per round
    cpu: list[float] = field(default_factory=list)  # darkroom CPU seconds per round
    own_cpu: list[float] = field(default_factory=list)  # this process's (client, fakes) per round
    failed: int = 0


# --------------------------------------------------------------------------------------------
# The fakes, the catalog override and the server


def cheap_fakes() -> None:
    """The fakes draw every image anew (a 1024x1024 PNG: about 4 ms of this process's CPU, which
    a vendor spends on its own machines, not on darkroom's): remember the few that recur (every
    project here has the same prompt, so the same colours)."""
    vendor_fakes.picture = functools.lru_cache(maxsize=64)(vendor_fakes.picture)


def image_work_ms(repeats: int = 10) -> float:
    """What the provider backend does to an image that is not a PNG of the project's size, in
    this process: decode and check (``_checked``), fit and encode as PNG (``_fit``; the backend
    skips this for a PNG already of that size), on a fake's 1024x1024 image; median ms."""
    from darkroom.engine.providers.base import _checked, _fit

    data = vendor_fakes.picture(1024, 1024, vendor_fakes.prompt_colour(PROMPT), "png")
    times = []
    for _ in range(repeats + 2):
        t0 = time.perf_counter()
        _fit(_checked(data, "fake"), 1024, 1024)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[2:]) * 1000


class Node(ServeProcess):
    """``darkroom serve --no-preview-only`` in a subprocess, on loopback."""

    def __init__(self, data_dir: Path, catalog: Path) -> None:
        args = ["--no-preview-only", "--data-dir", str(data_dir), "--catalog", str(catalog)]
        env = {
            "DARKROOM_LOG_LEVEL": "warning",
            "DARKROOM_DATABASE_URL": "",
            "DARKROOM_STORAGE_URL": "",
            "DARKROOM_DEVICE": "cpu",  # the diffusers models are never asked for here
            "DARKROOM_WORKERS": "2",
            "BENCH_OPENAI_KEY": KEYS["OPENAI"],
            "BENCH_GEMINI_KEY": KEYS["GEMINI"],
        }
        super().__init__(args, env, data_dir.parent / "server.log", "darkroom")
        try:
            self.key = (data_dir / "dev-api-key").read_text().strip()
            self.db = sqlite3.connect(data_dir / "darkroom.sqlite3", timeout=30)
        except BaseException:
            self.stop()
            raise

    def times(self, ids: Sequence[str]) -> list[ProjectTimes]:
        marks = ",".join("?" * len(ids))
        rows = self.db.execute(
            "SELECT id, status, created_at, started_at, rendered_at, completed_at, render_ms "
            f"FROM projects WHERE id IN ({marks})",
            list(ids),
        ).fetchall()
        return [ProjectTimes.from_row(row) for row in rows]

    def stop(self) -> None:
        super().stop()
        if hasattr(self, "db"):
            self.db.close()


# --------------------------------------------------------------------------------------------
# One project, and the same calls sent to the fake directly


async def project(client: httpx.AsyncClient, case: Case) -> tuple[str, str, float]:
    """Create a project and long-poll it to its end: (id, status, seconds seen by the client)."""
    body = {
        "image_count": case.images,
        "model": case.model,
        "resolution": "1k",
        "aspect_ratio": "1:1",
        "style": {"prompt": PROMPT},
    }
    t0 = time.perf_counter()
    answer = await client.post("/v1/ai-image-generator", json=body)
    answer.raise_for_status()
    project_id = str(answer.json()["id"])
    status = "queued"
    while status not in TERMINAL:
        polled = await client.get(f"/v1/image-projects/{project_id}", params={"wait": 30})
        polled.raise_for_status()
        status = str(polled.json()["status"])
    return project_id, status, time.perf_counter() - t0


async def openai_dialect(client: httpx.AsyncClient) -> float:
    """The OpenAI dialect's synchronous generation (gpt-image-2): seconds to the answer."""
    body = {
        "model": "gpt-image-2",
        "prompt": PROMPT,
        "size": "1024x1024",
        "response_format": "b64_json",
    }
    t0 = time.perf_counter()
    answer = await client.post("/v1/images/generations", json=body)
    answer.raise_for_status()
    assert answer.json()["data"][0]["b64_json"]
    return time.perf_counter() - t0


@dataclass(frozen=True)
class Replay:
    """The last call darkroom sent to a fake, to send again without darkroom."""

    url: str
    headers: dict[str, str]
    json: Any

    @classmethod
    def last(cls, fake: FakeVendor) -> Replay:
        sent = fake.requests[-1]
        assert sent.answered == 200, f"{type(fake).__name__} answered {sent.answered}"
        keep = ("authorization", "x-goog-api-key")
        headers = {name: value for name, value in sent.headers.items() if name in keep}
        return cls(fake.origin + sent.path, headers, sent.json)


async def direct(client: httpx.AsyncClient, replay: Replay, calls: int) -> float:
    """``calls`` of the replayed request to the fake at once: seconds until all answered."""

    async def one() -> None:
        answer = await client.post(replay.url, headers=replay.headers, json=replay.json)
        answer.raise_for_status()
        assert answer.content

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(calls)))
    return time.perf_counter() - t0


def peak_rendering(times: Sequence[ProjectTimes]) -> int:
    """The most of these projects between started_at and completed_at at one moment."""
    events = sorted(
        [(t.started, 1) for t in times if t.started and t.completed]
        + [(t.completed, -1) for t in times if t.started and t.completed]
    )
    now = peak = 0
    for _, delta in events:
        now += delta
        peak = max(peak, now)
    return peak


# --------------------------------------------------------------------------------------------
# The phases


async def run(
    node: Node,
    fakes: dict[str, FakeVendor],
    projects: int,
    rounds: int,
) -> tuple[dict[Case, Sequential], dict[Case, Concurrent], list[float], list[float]]:
    headers = {"Authorization": f"Bearer {node.key}"}
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with (
        httpx.AsyncClient(base_url=node.url, headers=headers, timeout=120, limits=limits) as dr,
        httpx.AsyncClient(timeout=60, limits=limits) as vendor,
    ):
        replays: dict[Case, Replay] = {}
        for case in CASES:  # warm-up, and the request to replay
            for _ in range(2):
                _, status, _ = await project(dr, case)
                assert status == "complete", f"warm-up {case.model}: {status}"
            replays[case] = Replay.last(fakes[case.vendor])
            await direct(vendor, replays[case], case.calls)
        await openai_dialect(dr)
        openai_replay = Replay.last(fakes["openai"])

        sequential: dict[Case, Sequential] = {}
        for number, case in enumerate(CASES, start=1):
            t = time.monotonic()
            seq = sequential[case] = Sequential()
            for i in range(projects):
                project_id, status, took = await project(dr, case)
                if status == "complete":
                    seq.e2e.append(took)
                    seq.ids.append(project_id)
                if i % 2:  # the upstream-only time, after every other project
                    seq.direct.append(await direct(vendor, replays[case], case.calls))
            seq.times = node.times(seq.ids)
            failed = projects - len(seq.ids)
            print(
                f"[1.{number}] {case.title}: {projects} one at a time in "
                f"{time.monotonic() - t:.0f} s" + (f", {failed} NOT complete" if failed else "")
            )
        dialect: list[float] = []
        dialect_direct: list[float] = []
        t = time.monotonic()
        for i in range(max(2, projects // 2)):
            dialect.append(await openai_dialect(dr))
            if i % 2:
                dialect_direct.append(await direct(vendor, openai_replay, 1))
        print(
            f"[1.4] OpenAI dialect, gpt-image-2: {len(dialect)} one at a time in "
            f"{time.monotonic() - t:.0f} s"
        )

        concurrent: dict[Case, Concurrent] = {}
        for number, case in enumerate(CASES, start=1):
            t = time.monotonic()
            con = concurrent[case] = Concurrent()
            for _ in range(rounds):
                cpu = node.cpu_seconds()
                own = time.process_time()
                t0 = time.perf_counter()
                done = await asyncio.gather(*(project(dr, case) for _ in range(CONCURRENT)))
                con.took.append(time.perf_counter() - t0)
                con.cpu.append(node.cpu_seconds() - cpu)
                con.own_cpu.append(time.process_time() - own)
                con.failed += sum(status != "complete" for _, status, _ in done)
                con.peak.append(peak_rendering(node.times([pid for pid, _, _ in done])))
                await asyncio.sleep(0.2)
                con.direct.append(await direct(vendor, replays[case], CONCURRENT * case.calls))
                await asyncio.sleep(0.2)
            print(
                f"[2.{number}] {case.title}: {rounds} x {CONCURRENT} at once in "
                f"{time.monotonic() - t:.0f} s; rounds took "
                + ", ".join(f"{x:.2f}" for x in con.took)
                + " s"
                + (f"; {con.failed} NOT complete" if con.failed else "")
            )
    return sequential, concurrent, dialect, dialect_direct


# --------------------------------------------------------------------------------------------
# The report


def ms(seconds: Sequence[float], q: float = 50) -> float:
    return percentile(seconds, q) * 1000


def table_row(label: str, value: float, reference: float | None, digits: int = 0) -> str:
    ref = "" if reference is None else f"{reference:,.{digits}f}"
    ratio = "" if not reference else f"{value / reference:.2f}x"
    return f"| {label} | {value:,.{digits}f} | {ref} | {ratio} |"


def report(
    sequential: dict[Case, Sequential],
    concurrent: dict[Case, Concurrent],
    dialect: list[float],
    dialect_direct: list[float],
    latency: float,
    concurrency: int,
    image_ms: float,
) -> None:
    print("\nTimes in ms unless stated; ratio = value / reference.")
    print("\n| figure | value | ideal or upstream-only | ratio |")
    print("|---|---:|---:|---:|")
    waves = math.ceil(CONCURRENT / concurrency)
    for case in CASES:
        seq = sequential[case]
        con = concurrent[case]
        times = [t for t in seq.times if t.started and t.rendered and t.completed]
        queue = [t.started - t.created for t in times if t.started]
        render = [t.rendered - t.started for t in times if t.rendered and t.started]
        finish = [t.completed - t.rendered for t in times if t.completed and t.rendered]
        span = {t.id: t.completed - t.created for t in times if t.completed}
        e2e = dict(zip(seq.ids, seq.e2e, strict=True))
        outside = [e2e[pid] - span[pid] for pid in span]
        direct_p50 = ms(seq.direct)
        print(f"| **{case.title}** | | | |")
        print(
            table_row(
                f"1. one at a time ({len(seq.e2e)}): end-to-end p50, vs direct call(s)",
                ms(seq.e2e),
                direct_p50,
            )
        )
        print(table_row("end-to-end p95, vs direct p95", ms(seq.e2e, 95), ms(seq.direct, 95)))
        print(
            table_row(
                "darkroom's added p50 (end-to-end p50 - direct p50), vs the fake's latency",
                ms(seq.e2e) - direct_p50,
                latency * 1000,
            )
        )
        print(table_row("of which queue wait, created_at -> started_at, p50", ms(queue), None, 1))
        print(
            table_row(
                "started_at -> completed_at p50, vs direct p50", ms(render) + ms(finish), direct_p50
            )
        )
        print(table_row("of which started_at -> rendered_at (backend) p50", ms(render), direct_p50))
        print(
            table_row(
                f"re-encoding {case.images} image(s) (decode, fit, PNG), not paid here: the "
                "fakes send PNGs of the project's size (measured in this process)",
                case.images * image_ms,
                None,
                1,
            )
        )
        print(
            table_row(
                "of which rendered_at -> completed_at (store, commit) p50", ms(finish), None, 1
            )
        )
        print(
            table_row(
                "client's create + long poll notice, outside the table, p50", ms(outside), None, 1
            )
        )
        ideal = waves * latency
        took = statistics.median(con.took)
        images = CONCURRENT * case.images
        print(
            table_row(
                f"2. {CONCURRENT} at once: all complete, s (median of {len(con.took)}), "
                f"vs {waves} waves x latency",
                took,
                ideal,
                2,
            )
        )
        print(table_row("projects/s, vs ideal", CONCURRENT / took, CONCURRENT / ideal, 1))
        print(table_row("images/s, vs ideal", images / took, images / ideal, 1))
        print(
            table_row(
                f"fake alone, the same {CONCURRENT * case.calls} calls at once, s, vs latency",
                statistics.median(con.direct),
                latency,
                2,
            )
        )
        print(
            table_row(
                "most projects rendering at once, vs upstream_concurrency",
                max(con.peak),
                concurrency,
            )
        )
        print(
            table_row(
                "darkroom CPU per project, ms (all rounds)",
                1000 * sum(con.cpu) / (CONCURRENT * len(con.cpu)),
                None,
                1,
            )
        )
        busy = 100 * sum(con.cpu) / sum(con.took)
        print(table_row("CPU during the rounds, % of one core: darkroom", busy, None))
        own = 100 * sum(con.own_cpu) / sum(con.took)
        print(table_row("CPU during the rounds, % of one core: client and fakes", own, None))
    print("| **OpenAI dialect, gpt-image-2, synchronous answer** | | | |")
    print(
        table_row(
            f"POST /v1/images/generations ({len(dialect)}) p50, vs direct p50",
            ms(dialect),
            ms(dialect_direct),
        )
    )
    print(
        table_row(
            "darkroom's added p50, vs the fake's latency",
            ms(dialect) - ms(dialect_direct),
            latency * 1000,
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 projects, 1 round of 32")
    parser.add_argument("--latency", type=float, default=0.5, help="the fakes' latency, s (0.5)")
    parser.add_argument("--projects", type=int, default=20, help="one at a time, per case (20)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of 32 at once, per case (2)")
    args = parser.parse_args(argv)
    projects, rounds = (8, 1) if args.quick else (args.projects, args.rounds)

    from darkroom.settings import Settings

    concurrency = Settings().upstream_concurrency  # what the server reads from this environment
    began = time.monotonic()
    print_run_header("darkroom hosted models through vendors' APIs (fakes on loopback)")
    print(
        f"  fakes' latency {args.latency:g} s; upstream_concurrency {concurrency}; "
        f"{projects} projects one at a time and {rounds} x {CONCURRENT} at once, per case"
    )

    cheap_fakes()
    image_ms = image_work_ms()
    print(f"  a fake's image through _checked and _fit, in this process: {image_ms:.1f} ms")
    fakes: dict[str, FakeVendor] = {
        "openai": FakeOpenAI(KEYS["OPENAI"], latency=args.latency),
        "gemini": FakeGemini(KEYS["GEMINI"], latency=args.latency),
    }
    try:
        with tempfile.TemporaryDirectory(prefix="darkroom-bench-") as tmp_name:
            tmp = Path(tmp_name)
            catalog = catalog_override(
                fakes, tmp / "catalog.toml", timeout=60, retries=0, env_prefix="BENCH"
            )
            node = Node(tmp / "data", catalog)
            try:
                print(f"  server: {shlex.join(node.command)} (pid {node.proc.pid})")
                with asyncio.Runner(loop_factory=new_event_loop) as runner:
                    results = runner.run(run(node, fakes, projects, rounds))
            finally:
                node.stop()
                report_log_problems(node.log_path)
    finally:
        for fake in fakes.values():
            fake.stop()
    report(*results, args.latency, concurrency, image_ms)
    calls = {name: len(fake.requests) for name, fake in fakes.items()}
    print(
        f"\nCalls the fakes answered: {calls}. Load average at end: {load_average()}; "
        f"whole run {time.monotonic() - began:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
