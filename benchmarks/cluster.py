"""darkroom as a cluster of processes: PostgreSQL against SQLite shared by the same processes,
side by side in one run.

Starts darkroom nodes as subprocesses on this machine (``darkroom serve --workers 0`` API nodes
and ``darkroom worker`` render workers, each with a data directory of its own, on one database
and one shared storage directory: ``tests/cluster.py``), once on a PostgreSQL 15 server started for
the run with its durable defaults (``fsync``, ``synchronous_commit`` and ``full_page_writes`` on)
and once on one SQLite file (WAL, ``synchronous=FULL``, darkroom's default) that the same
processes share. Every node runs with darkroom's defaults (``poll_seconds`` 1,
``lease_seconds`` 15) except rate limiting and the per-account queue cap, both off. Phases:

1. **create → claim**: one API node and one worker (idle each time); ``N`` one-image 1k
   flux-schnell projects created one at a time on API node 1, each awaited until complete:
   ``started_at - created_at`` (both written on this machine's clock);
2. **render end → long-poll answer on another node**: the same projects, each awaited with
   ``GET /v1/image-projects/{id}?wait=30`` on API node 2, sent right after the create answered:
   the client's receive time (``time.time()``) minus ``completed_at``;
3. **creates per second**: an API-only node, 32 keep-alive connections POSTing creates (one
   640px image) back to back for 5 s or 2,500 creates, whichever comes first;
4. **open long polls**: the projects are topped up to 5,000 queued ones (no worker runs, so they
   stay queued), then 5,000 long polls (``?wait=60``) are opened on that node with httpx's
   asyncio client; ``GET /healthz`` is timed (one keep-alive connection, one request every
   20 ms), before they are opened and while they are, with the node's CPU (``/proc/PID/stat``);
5. **recovering a killed worker's jobs**: one API node, two workers (2 jobs at a time each);
   the second is paused (SIGSTOP) while the first claims two slow projects (2 images,
   seedream-v4, 4k: ~1.5 s each here), then resumed, idle, and the first is killed (``kill -9``)
   mid-render: from the kill until the other worker has claimed each of its jobs (``started_at``
   of attempt 2), with ``lease_seconds`` 15 (the default) and 3.

It prints the machine, the load average, the settings, then one table: each figure on PostgreSQL
and on SQLite, their ratio, and the target where the issue set one.

Run from the repository root::

    .venv/bin/python benchmarks/cluster.py            # 4-5 minutes on a busy 2-core machine
    .venv/bin/python benchmarks/cluster.py --quick    # fewer samples, lease 3 s only: ~2 minutes

Needs PostgreSQL 15 (``scripts/ensure-postgres``); run as root, its server runs as the
``postgres`` user. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import shlex
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # tests/: the cluster and PostgreSQL helpers

from tests.cluster import Cluster, Process, cluster  # noqa: E402
from tests.postgres import BIN as POSTGRES_BIN  # noqa: E402
from tests.postgres import PostgresServer  # noqa: E402
from tests.waiting import wait_until  # noqa: E402

from api_overhead import (  # noqa: E402
    HttpConnection,
    code_revision,
    create_request,
    load_average,
    machine,
    new_event_loop,
    percentile,
    run_load,
)
from darkroom.store.database import as_utc  # noqa: E402
from darkroom.store.tables import projects  # noqa: E402

PG, LITE = "PostgreSQL", "SQLite"
PROMPT = "a lighthouse at dusk over a calm sea"
SMALL = {"image_count": 1, "model": "flux-schnell", "resolution": "1k"}
SLOW = {"image_count": 2, "model": "seedream-v4", "resolution": "4k"}  # ~1.5 s to render here
# Every node: no rate limit, no per-account queue cap, quiet logs; the rest is darkroom's default.
NODE_SETTINGS: dict[str, object] = {"log_level": "warning", "queue_max_per_account": 0}
CREDITS = 10**9
WARM_UP = 2  # first projects of phases 1-2, not counted (connections, statement caches)
SETTLE_SECONDS = 60.0  # how long phase 4 waits for the node to finish reading the new polls


@dataclass(frozen=True)
class Plan:
    samples: int  # phases 1-2 on PostgreSQL (each ~0.1 s)
    sqlite_samples: int  # phases 1-2 on SQLite (each ~1 s: claims and waiters poll every second)
    load_seconds: float  # phase 3
    load_cap: int
    polls: int  # phase 4
    healthz: int
    healthz_every: float  # seconds between two /healthz requests
    leases: tuple[float, ...]  # phase 5


FULL = Plan(
    samples=100,
    sqlite_samples=30,
    load_seconds=5.0,
    load_cap=2500,
    polls=5000,
    healthz=300,
    healthz_every=0.02,
    leases=(15.0, 3.0),
)
QUICK = Plan(
    samples=30,
    sqlite_samples=12,
    load_seconds=2.0,
    load_cap=1000,
    polls=1000,
    healthz=100,
    healthz_every=0.02,
    leases=(3.0,),
)


# --------------------------------------------------------------------------------------------
# Small helpers


def p(values: Sequence[float], q: float) -> float:
    return percentile(values, q) if values else float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def established(port: int) -> int:
    """TCP connections established to ``port`` on 127.0.0.1 (accepted or in the accept queue)."""
    suffix = f":{port:04X}"
    count = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            parts = line.split(None, 4)
            if parts[3] == "01" and parts[1].endswith(suffix):
                count += 1
    return count


def raise_open_files(wanted: int) -> str:
    """Raise this process's open-file limit (the nodes started after inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return f"RLIMIT_NOFILE {soft} (hard {hard})"


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def seconds(value: datetime) -> float:
    return as_utc(value).timestamp()


def project_times(running: Cluster, project_id: str) -> Any:
    with running.engine.connect() as conn:
        return conn.execute(
            select(
                projects.c.status,
                projects.c.created_at,
                projects.c.started_at,
                projects.c.completed_at,
                projects.c.attempts,
                projects.c.lease_owner,
            ).where(projects.c.id == project_id)
        ).one()


class Databases:
    """Where each phase's database lives: a fresh one on the run's PostgreSQL server, or a new
    SQLite file that the phase's processes share."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.postgres: PostgresServer | None = None
        self._count = 0

    def url(self, kind: str) -> str:
        self._count += 1
        if kind == LITE:
            return f"sqlite:///{self.root / f'shared-{self._count}.sqlite3'}"
        if self.postgres is None:
            self.postgres = PostgresServer(durable=True)
            self.postgres.start()
        return self.postgres.create_database()

    def postgres_settings(self) -> str:
        import psycopg

        assert self.postgres is not None
        names = ("server_version", "fsync", "synchronous_commit", "full_page_writes")
        with psycopg.connect(self.postgres._dsn) as conn:
            shown = [f"{n}={conn.execute(f'SHOW {n}').fetchone()[0]}" for n in names]  # type: ignore[index]
        return " ".join(shown)

    def close(self) -> None:
        if self.postgres is not None:
            self.postgres.stop()


@contextlib.contextmanager
def nodes(root: Path, url: str, **settings: object) -> Iterator[Cluster]:
    with cluster(root, url, **{**NODE_SETTINGS, **settings}) as running:
        try:
            yield running
        except BaseException:
            for process in running.processes:
                if process.popen.poll() is not None and process.popen.returncode not in (0, -9):
                    print(f"  {process.name} exited {process.popen.returncode}; its log:")
                    print(process.log.read_text(errors="replace")[-3000:])
            raise


# --------------------------------------------------------------------------------------------
# Phases 1 and 2: create -> claim, render end -> long-poll answer on another node


@dataclass
class Latency:
    claim_ms: list[float] = field(default_factory=list)
    answer_ms: list[float] = field(default_factory=list)
    late: int = 0  # long polls sent after the project had completed (not counted)
    committed_ms: list[float] = field(default_factory=list)  # created_at -> create answered
    render_ms: list[float] = field(default_factory=list)


def latencies(root: Path, url: str, samples: int) -> Latency:
    result = Latency()
    with nodes(root, url) as running:
        _, first = running.api("api-1")
        _, second = running.api("api-2")
        running.worker("worker")
        key = running.account(first, CREDITS)
        headers = {"Authorization": f"Bearer {key}"}
        with (
            httpx.Client(base_url=first, headers=headers, timeout=60) as one,
            httpx.Client(base_url=second, headers=headers, timeout=60) as two,
        ):
            for n in range(WARM_UP + samples):
                made = one.post(
                    "/v1/ai-image-generator", json={**SMALL, "style": {"prompt": f"{PROMPT} {n}"}}
                )
                assert made.status_code == 200, made.text
                project_id = made.json()["id"]
                sent = time.time()  # also when the create's answer arrived: it was committed
                answer = two.get(f"/v1/image-projects/{project_id}", params={"wait": 30})
                received = time.time()
                assert answer.status_code == 200, answer.text
                assert answer.json()["status"] == "complete", answer.json()
                row = project_times(running, project_id)
                if n < WARM_UP:
                    continue
                result.claim_ms.append((seconds(row.started_at) - seconds(row.created_at)) * 1000)
                result.committed_ms.append((sent - seconds(row.created_at)) * 1000)
                result.render_ms.append(
                    (seconds(row.completed_at) - seconds(row.started_at)) * 1000
                )
                if sent >= seconds(row.completed_at):
                    result.late += 1
                else:
                    result.answer_ms.append((received - seconds(row.completed_at)) * 1000)
    return result


# --------------------------------------------------------------------------------------------
# Phases 3 and 4: creates per second; open long polls and /healthz


@dataclass
class Load:
    creates: int = 0
    creates_per_s: float = 0.0
    create_ms: list[float] = field(default_factory=list)
    create_errors: int = 0
    create_server_cpu: float = 0.0  # % of one core
    polls: int = 0
    connect_s: float = 0.0  # until every poll's connection is established
    open_s: float = 0.0  # and the node has settled (its CPU fell back), at most 60 s more
    settle_cpu: list[float] = field(default_factory=list)  # the node's CPU % each second meanwhile
    healthz_idle_ms: list[float] = field(default_factory=list)
    healthz_ms: list[float] = field(default_factory=list)
    healthz_timeouts: int = 0
    idle_cpu: float = 0.0  # % of one core, while /healthz is timed without polls
    polls_cpu: float = 0.0  # % of one core, while /healthz is timed with the polls open
    answered_early: int = 0  # polls answered (or failed) before they were closed
    early_sample: str = ""


async def healthz_series(
    port: int, count: int, every: float, pid: int, budget: float
) -> tuple[list[float], float, int]:
    """``count`` requests, one every ``every`` seconds (or fewer when ``budget`` seconds run
    out): latencies in ms, the node's CPU % meanwhile, and requests that got no answer in 5 s."""
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(HttpConnection, "127.0.0.1", port)
    raw = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    latencies: list[float] = []
    timeouts = 0
    cpu0, start = cpu_seconds(pid), time.perf_counter()
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            if t0 - start > budget:
                break
            try:
                status, _ = await asyncio.wait_for(conn.request(raw), 5)
            except TimeoutError:
                timeouts += 1
                break  # the connection has a request in flight: stop here
            assert status == 200
            elapsed = time.perf_counter() - t0
            latencies.append(elapsed * 1000)
            await asyncio.sleep(max(0.0, every - elapsed))
    finally:
        assert conn.transport is not None
        conn.transport.close()
    cpu = 100 * (cpu_seconds(pid) - cpu0) / (time.perf_counter() - start)
    return latencies, cpu, timeouts


async def open_polls(
    url: str, key: str, ids: list[str], plan: Plan, pid: int, result: Load
) -> None:
    port = port_of(url)
    before = established(port)
    # httpx's pool scans its connections for each request: many small clients, not one big one.
    per_client = 100
    clients = [
        httpx.AsyncClient(
            base_url=url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=httpx.Timeout(120, connect=60),
            limits=httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client),
        )
        for _ in range(0, len(ids), per_client)
    ]
    started = time.perf_counter()
    tasks = [
        asyncio.create_task(
            clients[n // per_client].get(f"/v1/image-projects/{pid_}", params={"wait": 60})
        )
        for n, pid_ in enumerate(ids)
    ]
    try:
        deadline = started + 120
        while established(port) - before < len(ids) and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
        result.connect_s = time.perf_counter() - started
        # Then until the node has read each project once: its CPU falls back (bounded: where the
        # waiters keep waking up, it may never fall). The node's CPU each second is kept.
        settle = time.perf_counter() + SETTLE_SECONDS
        while time.perf_counter() < settle:
            cpu0 = cpu_seconds(pid)
            await asyncio.sleep(1.0)
            result.settle_cpu.append(100 * (cpu_seconds(pid) - cpu0))
            if result.settle_cpu[-1] < 25:
                break
        result.open_s = time.perf_counter() - started
        result.polls = established(port) - before
        healthz, cpu, timeouts = await healthz_series(
            port, plan.healthz, plan.healthz_every, pid, budget=40
        )
        result.healthz_ms, result.polls_cpu, result.healthz_timeouts = healthz, cpu, timeouts
        early = [t for t in tasks if t.done()]
        result.answered_early = len(early)
        if early:
            first = early[0]
            result.early_sample = (
                repr(first.exception())
                if first.exception() is not None
                else f"HTTP {first.result().status_code} {first.result().text[:200]}"
            )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            await client.aclose()


def load(root: Path, url: str, plan: Plan, runner: asyncio.Runner) -> Load:
    result = Load()
    with nodes(root, url) as running:
        node, api = running.api("api")
        key = running.account(api, CREDITS)
        port = port_of(api)
        raw = create_request(port, key)
        runner.run(run_load(port, raw, 4, 0.5, keep_bodies=False, max_requests=50))  # warm up
        cpu0 = cpu_seconds(node.pid)
        measured = runner.run(
            run_load(
                port, raw, 32, plan.load_seconds, keep_bodies=False, max_requests=plan.load_cap
            )
        )
        result.create_server_cpu = 100 * (cpu_seconds(node.pid) - cpu0) / measured.seconds
        result.creates = measured.statuses.get(200, 0)
        result.creates_per_s = measured.rps
        result.create_ms = measured.latencies_ms
        result.create_errors = measured.errors

        with running.engine.connect() as conn:
            queued = conn.execute(
                select(func.count()).select_from(projects).where(projects.c.status == "queued")
            ).scalar_one()
        if queued < plan.polls:
            runner.run(
                run_load(port, raw, 32, 120, keep_bodies=False, max_requests=plan.polls - queued)
            )
        with running.engine.connect() as conn:
            ids = list(
                conn.execute(
                    select(projects.c.id).where(projects.c.status == "queued").limit(plan.polls)
                ).scalars()
            )
        time.sleep(1)  # let the node's CPU fall back after the creates
        idle, result.idle_cpu, _ = runner.run(
            healthz_series(port, plan.healthz, plan.healthz_every, node.pid, budget=40)
        )
        result.healthz_idle_ms = idle
        runner.run(open_polls(api, key, ids, plan, node.pid, result))
    return result


# --------------------------------------------------------------------------------------------
# Phase 5: a killed worker's jobs


@dataclass
class Recovered:
    reclaim_ms: list[float] = field(default_factory=list)  # kill -> started_at of attempt 2
    others: int = 0  # jobs claimed again by someone other than worker-b (should be none)


def rendering_by(running: Cluster, node_id: str) -> list[str]:
    with running.engine.connect() as conn:
        query = select(projects.c.id).where(
            projects.c.status == "rendering", projects.c.lease_owner == node_id
        )
        return list(conn.execute(query).scalars())


def recovery(root: Path, url: str, lease: float) -> Recovered:
    result = Recovered()
    with nodes(root, url, lease_seconds=lease) as running:
        _, api = running.api("api")
        first: Process = running.worker("worker-a")
        second = running.worker("worker-b")
        node_a, node_b = running.node_of(first), running.node_of(second)
        assert node_a is not None and node_b is not None
        key = running.account(api, CREDITS)
        # Worker-b is paused while worker-a claims both jobs (2 at a time), so that it is idle
        # when they are handed back: the figure is the hand-over, not the end of its own renders.
        second.popen.send_signal(signal.SIGSTOP)
        try:
            with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {key}"}) as http:
                for n in range(2):
                    body = {**SLOW, "style": {"prompt": f"{PROMPT} {n}"}}
                    made = http.post("/v1/ai-image-generator", json=body, timeout=30)
                    assert made.status_code == 200, made.text
            held = wait_until(
                lambda: len(rendering_by(running, node_a)) == 2 and rendering_by(running, node_a),
                "worker-a to render both",
                timeout=60,
            )
        finally:
            second.popen.send_signal(signal.SIGCONT)
        time.sleep(0.2)  # worker-b catches up with the signals it missed (none for it)
        killed = time.time()
        first.kill()
        pending = set(held)
        deadline = time.monotonic() + lease * 2 + 30
        while pending and time.monotonic() < deadline:
            for project_id in list(pending):
                row = project_times(running, project_id)
                if row.attempts >= 2 and row.started_at is not None:
                    pending.discard(project_id)
                    result.reclaim_ms.append((seconds(row.started_at) - killed) * 1000)
                    if row.status == "rendering" and row.lease_owner != node_b:
                        result.others += 1
            time.sleep(0.05)
        if pending:
            raise AssertionError(f"{len(pending)} jobs of the killed worker not taken over")
    return result


# --------------------------------------------------------------------------------------------
# The report


def ratio(sqlite: float, postgres: float) -> str:
    if postgres != postgres or sqlite != sqlite or postgres == 0:  # nan
        return "-"
    return f"{sqlite / postgres:.2f}x"


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str, str]] = []

    def add(
        self,
        label: str,
        pg: float,
        lite: float,
        fmt: str = "{:.1f}",
        target: str = "",
        met: Callable[[float], bool] | None = None,
    ) -> None:
        verdict = "" if met is None else ("MET" if met(pg) else "MISSED")
        self.rows.append(
            (label, fmt.format(pg), fmt.format(lite), ratio(lite, pg), target, verdict)
        )

    def text(self, label: str, pg: str, lite: str) -> None:
        self.rows.append((label, pg, lite, "", "", ""))

    def print(self) -> None:
        header = ("metric", PG, LITE, "SQLite / PG", "target (PG)", "")
        print("| " + " | ".join(header) + " |")
        print("|---|---:|---:|---:|---|---|")
        for row in self.rows:
            print("| " + " | ".join(row) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, shorter phases")
    parser.add_argument("--polls", type=int, help="open long polls in phase 4 (5000)")
    parser.add_argument(
        "--phases",
        default="latency,load,recovery",
        help="which to run, comma-separated: latency (1-2), load (3-4), recovery (5)",
    )
    parser.add_argument("--leases", help="phase 5's lease_seconds, comma-separated (15,3)")
    parser.add_argument(
        "--keep",
        metavar="DIR",
        help="run in DIR and keep it: the nodes' data directories and logs (SQLite files too)",
    )
    parser.add_argument(
        "--databases", default="postgres,sqlite", help="postgres, sqlite or both (the default)"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.polls is not None:
        plan = Plan(**{**plan.__dict__, "polls": args.polls})
    if args.leases:
        leases = tuple(float(v) for v in args.leases.split(","))
        plan = Plan(**{**plan.__dict__, "leases": leases})
    phases = {name.strip() for name in args.phases.split(",")}
    kinds = [{"postgres": PG, "sqlite": LITE}[name.strip()] for name in args.databases.split(",")]
    if not (POSTGRES_BIN / "initdb").exists() and PG in kinds:
        parser.error(
            f"PostgreSQL 15 is not installed ({POSTGRES_BIN}): run scripts/ensure-postgres"
        )

    limit = raise_open_files(plan.polls * 2 + 1024)
    from darkroom.settings import Settings

    defaults = Settings()
    started = time.monotonic()
    print("darkroom cluster benchmark: PostgreSQL against SQLite shared by the same processes")
    env = [f"{k}={v}" for k, v in os.environ.items() if k.startswith("DARKROOM_")]
    print(f"  command: {shlex.join([*env, sys.executable, *sys.argv])}")
    print(f"  machine: {machine()}")
    print(f"  code: {code_revision()}")
    print(f"  load average at start (1/5/15 min): {load_average()}")
    print(
        f"  node settings: poll_seconds={defaults.poll_seconds} (default) "
        f"lease_seconds={defaults.lease_seconds} (default; phase 5 also 3) "
        f"sqlite_synchronous={defaults.sqlite_synchronous} rate_limit_per_minute=0 "
        f"queue_max_per_account=0 log_level=warning; {limit}"
    )
    print(
        f"  note: every node, PostgreSQL and the client share these {os.cpu_count()} CPUs; "
        "no GPU is used (the preview backend renders on the CPU)."
    )

    lat: dict[str, Latency] = {}
    loads: dict[str, Load] = {}
    recovered: dict[tuple[str, float], Recovered] = {}
    with contextlib.ExitStack() as stack:
        if args.keep:
            root = Path(args.keep).resolve()
            root.mkdir(parents=True, exist_ok=True)
        else:
            tmp = tempfile.TemporaryDirectory(prefix="darkroom-cluster-bench-")
            root = Path(stack.enter_context(tmp))
        databases = Databases(root)
        step = 0
        try:
            with asyncio.Runner(loop_factory=new_event_loop) as runner:
                for kind in kinds:
                    if kind == PG:
                        databases.url(kind)  # starts the server, to print its settings
                        print(f"  PostgreSQL: {databases.postgres_settings()}")
                    if "latency" in phases:
                        samples = plan.samples if kind == PG else plan.sqlite_samples
                        print(
                            f"\n[{kind}] phases 1-2: {samples} projects, create -> claim -> "
                            "long-poll answer on another node",
                            flush=True,
                        )
                        step += 1
                        url = databases.url(kind)
                        lat[kind] = latencies(root / f"run-{step}", url, samples)
                        one = lat[kind]
                        print(
                            f"  claim p50 {p(one.claim_ms, 50):.1f} ms; answer p50 "
                            f"{p(one.answer_ms, 50):.1f} ms; late polls {one.late}"
                        )
                    if "load" in phases:
                        print(
                            f"\n[{kind}] phases 3-4: creates/s, then {plan.polls} open long "
                            "polls and /healthz",
                            flush=True,
                        )
                        step += 1
                        url = databases.url(kind)
                        loads[kind] = load(root / f"run-{step}", url, plan, runner)
                        one_load = loads[kind]
                        print(
                            f"  {one_load.creates_per_s:.0f} creates/s; {one_load.polls} polls "
                            f"open in {one_load.open_s:.1f} s; healthz p99 "
                            f"{p(one_load.healthz_ms, 99):.1f} ms"
                        )
                        series = " ".join(f"{v:.0f}" for v in one_load.settle_cpu)
                        print(f"  node CPU % each second once all were connected: {series}")
                    if "recovery" in phases:
                        for lease in plan.leases:
                            print(
                                f"\n[{kind}] phase 5: kill -9 a worker, lease_seconds={lease:g}",
                                flush=True,
                            )
                            step += 1
                            url = databases.url(kind)
                            got = recovery(root / f"run-{step}", url, lease)
                            recovered[kind, lease] = got
                            print(
                                "  reclaimed after (ms):",
                                ", ".join(f"{v:.0f}" for v in got.reclaim_ms),
                            )
        finally:
            databases.close()

    print(f"\nload average at the end (1/5/15 min): {load_average()}")
    print(f"total time: {time.monotonic() - started:.0f} s\n")
    table = Table()
    nan: float = float("nan")

    def both(get: Callable[[Any], float], source: dict[str, Any]) -> tuple[float, float]:
        return tuple(get(source[k]) if k in source else nan for k in (PG, LITE))  # type: ignore[return-value]

    if lat:
        table.text(
            "phases 1-2: projects (late long polls, not counted)",
            *(f"{len(lat[k].claim_ms)} ({lat[k].late})" if k in lat else "-" for k in (PG, LITE)),
        )
        table.add(
            "create -> claim p50 ms",
            *both(lambda r: p(r.claim_ms, 50), lat),
            target="<= 20 ms",
            met=lambda v: v <= 20,
        )
        table.add("create -> claim p90 ms", *both(lambda r: p(r.claim_ms, 90), lat))
        table.add(
            "render end -> long-poll answer on node 2, p50 ms",
            *both(lambda r: p(r.answer_ms, 50), lat),
            target="<= 50 ms",
            met=lambda v: v <= 50,
        )
        table.add(
            "render end -> long-poll answer on node 2, p90 ms",
            *both(lambda r: p(r.answer_ms, 90), lat),
        )
        table.add(
            "(created_at -> create answered, p50 ms)", *both(lambda r: p(r.committed_ms, 50), lat)
        )
        table.add("(render, claim -> complete, p50 ms)", *both(lambda r: p(r.render_ms, 50), lat))
    if loads:
        table.add(
            "phase 3: creates/s, 32 connections, API-only node",
            *both(lambda r: r.creates_per_s, loads),
            fmt="{:.0f}",
        )
        table.add("create latency p50 ms", *both(lambda r: p(r.create_ms, 50), loads))
        table.add("create latency p99 ms", *both(lambda r: p(r.create_ms, 99), loads))
        table.add(
            "(node CPU % of a core during creates)",
            *both(lambda r: r.create_server_cpu, loads),
            fmt="{:.0f}",
        )
        table.text(
            "(creates counted / errors)",
            *(
                f"{loads[k].creates} / {loads[k].create_errors}" if k in loads else "-"
                for k in (PG, LITE)
            ),
        )
        table.add(
            "phase 4: /healthz p50 ms, no long poll open",
            *both(lambda r: p(r.healthz_idle_ms, 50), loads),
        )
        table.add(
            "/healthz p99 ms, no long poll open", *both(lambda r: p(r.healthz_idle_ms, 99), loads)
        )
        table.add(
            "(node CPU %, no long poll open)", *both(lambda r: r.idle_cpu, loads), fmt="{:.0f}"
        )
        table.add("long polls open", *both(lambda r: r.polls, loads), fmt="{:.0f}")
        table.add("seconds until they are all connected", *both(lambda r: r.connect_s, loads))
        table.add(
            "seconds until the node settles (CPU < 25%, at most 60 s more)",
            *both(lambda r: r.open_s, loads),
        )
        table.add(
            "/healthz p50 ms, with the polls open", *both(lambda r: p(r.healthz_ms, 50), loads)
        )
        table.add(
            "/healthz p99 ms, with the polls open",
            *both(lambda r: p(r.healthz_ms, 99), loads),
            target="<= 50 ms",
            met=lambda v: v <= 50,
        )
        table.text(
            "(/healthz answered / timed out after 5 s)",
            *(
                f"{len(loads[k].healthz_ms)} / {loads[k].healthz_timeouts}" if k in loads else "-"
                for k in (PG, LITE)
            ),
        )
        table.add(
            "node CPU % of a core, with the polls open",
            *both(lambda r: r.polls_cpu, loads),
            fmt="{:.0f}",
        )
        table.add(
            "(long polls answered before they were closed)",
            *both(lambda r: r.answered_early, loads),
            fmt="{:.0f}",
        )
    for lease in plan.leases:
        if not any((k, lease) in recovered for k in (PG, LITE)):
            continue
        mine = {k: recovered[k, lease] for k in (PG, LITE) if (k, lease) in recovered}
        table.text(
            f"phase 5, lease {lease:g} s: killed worker's jobs",
            *(str(len(mine[k].reclaim_ms)) if k in mine else "-" for k in (PG, LITE)),
        )
        table.add(
            "kill -> claimed by the other worker, median ms",
            *both(lambda r: statistics.median(r.reclaim_ms), mine),
            fmt="{:.0f}",
        )
        table.add(
            "kill -> claimed by the other worker, max ms",
            *both(lambda r: max(r.reclaim_ms), mine),
            fmt="{:.0f}",
        )
    table.print()
    for (kind, lease), got in recovered.items():
        if got.others:
            print(f"{kind}, lease {lease:g}: {got.others} jobs claimed by another than worker-b")
    for kind, one_load in loads.items():
        if one_load.early_sample:
            print(f"{kind}: a long poll answered early: {one_load.early_sample}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
