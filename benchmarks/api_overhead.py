"""API overhead of the darkroom server: what the HTTP/DB/queue path adds on top of rendering.

Starts the real server (``darkroom serve``: one uvicorn process, SQLite, in-process workers, the
preview backend) in a temporary data directory with rate limiting off, and measures in one run:

1. create latency (``POST /v1/ai-image-generator``, 640px, one image) at 1 and 32 clients;
2. create-to-complete overhead at 1 and 32 clients, from the ``projects`` table timestamps:
   raw = (completed_at - created_at) - render_ms, and the same counted from when a worker became
   free for the project instead of from created_at (see ``overheads`` below);
3. create throughput as a ratio to ``GET /healthz`` (same client, same 32 connections, back to
   back), with ``wrk`` when it is installed and a lean asyncio keep-alive client otherwise;
4. the in-process preview render time of one 1024x1024 image.

Run from the repository root::

    .venv/bin/python benchmarks/api_overhead.py           # full run, about 1.5-2 minutes
    .venv/bin/python benchmarks/api_overhead.py --quick   # shorter phases

Only 127.0.0.1 is used. Client and server share the machine's CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

TARGET_RATIO = 0.5  # create rps / healthz rps, at least
TARGET_OVERHEAD_P99_MS = 50.0  # create-to-complete overhead p99 at 32 clients, at most
TARGET_RENDER_MS = 50.0  # preview render of one 1024x1024 image, at most

PROMPT = "a lighthouse at dusk over a calm sea, long exposure"
CREATE_BODY = json.dumps(
    {"image_count": 1, "model": "flux-schnell", "resolution": "640px", "style": {"prompt": PROMPT}}
).encode()


@dataclass(frozen=True)
class Plan:
    latency_seconds: float  # each create-latency phase (1 and 32 clients)
    throughput_seconds: int  # each throughput run (healthz, create)
    renders: int  # timed 1024x1024 preview renders
    cross_check: bool  # with wrk present, also measure throughput with the Python client
    latency_cap: int  # at most this many creates per latency phase: bounds the queue to drain


FULL = Plan(
    latency_seconds=5.0, throughput_seconds=5, renders=20, cross_check=True, latency_cap=2500
)
QUICK = Plan(
    latency_seconds=2.0, throughput_seconds=2, renders=8, cross_check=False, latency_cap=1000
)


# --------------------------------------------------------------------------------------------
# Small statistics helpers


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in 0..100."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def p50_p99(values: Sequence[float]) -> str:
    return f"{percentile(values, 50):.1f} / {percentile(values, 99):.1f}"


# --------------------------------------------------------------------------------------------
# A lean HTTP/1.1 keep-alive client: one asyncio Protocol per connection, prebuilt requests


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection, one request in flight; responses need a Content-Length."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            waiter.set_exception(RuntimeError("response without Content-Length"))
            return
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : stop if stop >= 0 else len(head)])
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        body = bytes(self.buffer[end + 4 : total])
        del self.buffer[:total]
        waiter.set_result((int(head[9:12]), body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("server closed the connection"))

    def request(self, raw: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return self.waiter


@dataclass
class LoadResult:
    clients: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    bodies: list[bytes] = field(default_factory=list)
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    machine_cpu_s: float = 0.0  # busy CPU time of the whole machine, all processes

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def rps(self) -> float:
        """Successful (200) responses per second."""
        return self.statuses.get(200, 0) / self.seconds

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200)


async def run_load(
    port: int,
    raw: bytes,
    clients: int,
    seconds: float,
    *,
    keep_bodies: bool,
    max_requests: int | None = None,
) -> LoadResult:
    """``clients`` connections, each sending ``raw`` back to back for ``seconds`` or until
    ``max_requests`` requests have been sent in all."""
    loop = asyncio.get_running_loop()
    conns: list[HttpConnection] = []
    for _ in range(clients):
        _, conn = await loop.create_connection(HttpConnection, "127.0.0.1", port)
        conns.append(conn)
    per_client: list[tuple[list[float], dict[int, int], list[bytes]]] = [
        ([], {}, []) for _ in conns
    ]
    perf = time.perf_counter
    budget = [max_requests if max_requests is not None else -1]

    async def client(
        conn: HttpConnection, sink: tuple[list[float], dict[int, int], list[bytes]]
    ) -> None:
        latencies, statuses, bodies = sink
        while perf() < deadline and budget[0] != 0:
            budget[0] -= 1
            t0 = perf()
            status, body = await conn.request(raw)
            latencies.append((perf() - t0) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
            if keep_bodies:
                bodies.append(body)

    cpu0 = time.process_time()
    start = perf()
    deadline = start + seconds
    await asyncio.gather(*(client(c, s) for c, s in zip(conns, per_client, strict=True)))
    elapsed = perf() - start
    cpu = time.process_time() - cpu0
    for conn in conns:
        assert conn.transport is not None
        conn.transport.close()
    result = LoadResult(clients=clients, seconds=elapsed, client_cpu_s=cpu)
    for latencies, statuses, bodies in per_client:
        result.latencies_ms += latencies
        result.bodies += bodies
        for status, n in statuses.items():
            result.statuses[status] = result.statuses.get(status, 0) + n
    return result


def create_request(port: int, key: str) -> bytes:
    head = (
        f"POST /v1/ai-image-generator HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(CREATE_BODY)}\r\n\r\n"
    )
    return head.encode() + CREATE_BODY


def healthz_request(port: int) -> bytes:
    return f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


# --------------------------------------------------------------------------------------------
# wrk, when installed


WRK_CREATE_SCRIPT = """wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""


def run_wrk(wrk: str, url: str, clients: int, seconds: int, script: Path | None) -> LoadResult:
    cmd = [wrk, "-t1", f"-c{clients}", f"-d{seconds}s", url]
    if script is not None:
        cmd[1:1] = ["-s", str(script)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    count = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if count is None:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    elapsed = float(count.group(2)) / (1000 if count.group(3) == "ms" else 1)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if socket_errors:
        print(f"  wrk socket errors: {socket_errors.group(1)}")
    requests = int(count.group(1))
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    statuses = {200: requests - errors} | ({0: errors} if errors else {})
    return LoadResult(clients=clients, seconds=elapsed, statuses=statuses, client_cpu_s=cpu)


# --------------------------------------------------------------------------------------------
# The server under test


def machine_busy_seconds() -> float:
    """Busy (not idle, not iowait) CPU seconds of the whole machine since boot, all CPUs."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def print_run_header(title: str) -> None:
    """What a benchmark's output starts with: the command to run it again, the machine, the code
    and the load."""
    print(title)
    env = [
        f"{k}={v}" for k, v in os.environ.items() if k.startswith("DARKROOM_") or k == "PYTHONPATH"
    ]
    print(f"  command: {shlex.join([*env, sys.executable, *sys.argv])}")
    print(f"  machine: {machine()}")
    print(f"  code: {code_revision()}")
    print(f"  load average at start (1/5/15 min): {load_average()}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C (darkroom drains and exits), then a kill after 20 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def darkroom_command() -> list[str]:
    script = Path(sys.executable).with_name("darkroom")
    if script.exists():
        return [str(script)]
    found = shutil.which("darkroom")
    return [found] if found else [sys.executable, "-m", "darkroom.cli.main"]


SERVER_ENV = {"DARKROOM_RATE_LIMIT_PER_MINUTE": "0", "DARKROOM_HOST": "127.0.0.1"}


def effective_settings(workers: int) -> str:
    """The settings the server will run with: its defaults, this environment's DARKROOM_*
    variables and the benchmark's overrides."""
    from darkroom.settings import Settings

    settings = Settings(rate_limit_per_minute=0, workers=workers)
    names = ("workers", "rate_limit_per_minute", "sqlite_synchronous", "log_level")
    return " ".join(f"{name}={getattr(settings, name, '?')}" for name in names)


def code_revision() -> str:
    """Where the darkroom under test is imported from, and its git revision if it has one."""
    import darkroom

    where = Path(darkroom.__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(where), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        )
        revision = out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        revision = "not a git checkout"
    return f"darkroom {darkroom.__version__} from {where} ({revision})"


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServeProcess:
    """``darkroom serve`` in a subprocess on loopback, its output in a log file: started and
    waited on until ``/healthz`` answers, its CPU read, stopped with Ctrl-C."""

    def __init__(
        self, args: Sequence[str], env: dict[str, str], log_path: Path, name: str = "server"
    ) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.command = [*darkroom_command(), "serve", *args, "--port", str(self.port)]
        environment = {**os.environ, **SERVER_ENV, **env}
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.command, env=environment, stdout=self.log, stderr=subprocess.STDOUT
        )
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()  # not yet in the caller's hands to stop
            raise

    def _wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start; its log:\n{self.log_path.read_text()}")

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.log.closed:
            return
        stop_process(self.proc)
        self.log.close()


class Server(ServeProcess):
    def __init__(self, data_dir: Path, workers: int) -> None:
        self.data_dir = data_dir
        self.workers = workers
        args = ["--data-dir", str(data_dir)]
        super().__init__(args, {"DARKROOM_WORKERS": str(workers)}, data_dir.parent / "server.log")
        self.key = (data_dir / "dev-api-key").read_text().strip()
        self.db = sqlite3.connect(data_dir / "darkroom.sqlite3", timeout=30)

    def pending(self) -> int:
        query = "SELECT count(*) FROM projects WHERE status IN ('queued', 'rendering')"
        return int(self.db.execute(query).fetchone()[0])

    def drain(self, timeout: float = 120.0) -> float:
        """Wait until no project is queued or rendering; the seconds it took."""
        start = time.monotonic()
        while self.pending() and time.monotonic() - start < timeout:
            time.sleep(0.1)
        if self.pending():
            print(f"  warning: {self.pending()} projects still pending after {timeout:.0f} s")
        return time.monotonic() - start

    def projects(self) -> list[ProjectTimes]:
        rows = self.db.execute(
            "SELECT id, status, created_at, started_at, rendered_at, completed_at, render_ms "
            "FROM projects"
        ).fetchall()
        return [ProjectTimes.from_row(row) for row in rows]

    def stop(self) -> None:
        super().stop()
        if hasattr(self, "db"):
            self.db.close()


# --------------------------------------------------------------------------------------------
# Create-to-complete overhead from the database timestamps


def seconds_of(text: str | None) -> float | None:
    if text is None:
        return None
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # stored times are UTC
    return value.timestamp()


@dataclass(frozen=True)
class ProjectTimes:
    id: str
    status: str
    created: float
    started: float | None
    rendered: float | None
    completed: float | None
    render_s: float | None

    @classmethod
    def from_row(cls, row: tuple[object, ...]) -> ProjectTimes:
        pid, status, created, started, rendered, completed, render_ms = row
        return cls(
            id=str(pid),
            status=str(status),
            created=seconds_of(str(created)) or 0.0,
            started=seconds_of(started if started is None else str(started)),
            rendered=seconds_of(rendered if rendered is None else str(rendered)),
            completed=seconds_of(completed if completed is None else str(completed)),
            render_s=None if render_ms is None else int(str(render_ms)) / 1000,
        )


def all_busy_measure(
    intervals: list[tuple[float, float]], workers: int
) -> Callable[[float, float], float]:
    """measure(a, b): seconds within [a, b] during which at least ``workers`` of ``intervals``
    were open. A sweep over the interval ends plus a prefix integral: O(log n) per query."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    points: list[float] = []
    integral: list[float] = []
    state: list[int] = []
    count = 0
    acc = 0.0
    for t, delta in events:
        count += delta
        if points and t == points[-1]:
            state[-1] = int(count >= workers)
            continue
        if points:
            acc += (t - points[-1]) * state[-1]
        points.append(t)
        integral.append(acc)
        state.append(int(count >= workers))

    def upto(x: float) -> float:
        i = bisect_right(points, x) - 1
        return 0.0 if i < 0 else integral[i] + (x - points[i]) * state[i]

    return lambda a, b: max(0.0, upto(b) - upto(a))


@dataclass(frozen=True)
class Timeline:
    """A completed project's timestamps, in seconds."""

    id: str
    created: float
    started: float
    rendered: float
    completed: float
    render: float  # render_ms / 1000

    @classmethod
    def of(cls, p: ProjectTimes) -> Timeline | None:
        if p.status != "complete":
            return None
        if p.started is None or p.rendered is None or p.completed is None or p.render_s is None:
            return None
        return cls(p.id, p.created, p.started, p.rendered, p.completed, p.render_s)


def worker_free_times(done: list[Timeline], workers: int) -> dict[str, float]:
    """For each project, when the worker that claimed it had become free.

    Replays the claims in started_at order over ``workers`` workers, a worker being free again
    at its project's completed_at. A claim is given the worker that has been free the longest
    (the earliest free time): when two could have taken it, that charges the larger gap.
    """
    free = [float("-inf")] * workers
    out: dict[str, float] = {}
    for p in sorted(done, key=lambda p: p.started):
        became_free = heapq.heappop(free)
        out[p.id] = min(became_free, p.started)
        heapq.heappush(free, p.completed)
    return out


@dataclass
class Overhead:
    projects: int
    failed: int
    raw_ms: list[float] = field(default_factory=list)
    adjusted_ms: list[float] = field(default_factory=list)  # raw minus wait for a free worker
    pickup_ms: list[float] = field(default_factory=list)  # started - max(created, worker free)
    render_gap_ms: list[float] = field(default_factory=list)  # rendered - started - render_ms
    finish_ms: list[float] = field(default_factory=list)  # completed - rendered
    cumulative_ms: list[float] = field(default_factory=list)  # see overheads()
    render_ms: list[float] = field(default_factory=list)


def overheads(everything: list[ProjectTimes], ids: set[str], workers: int) -> Overhead:
    """Per-project overhead of the projects in ``ids`` (``everything`` gives worker occupancy).

    raw      = (completed_at - created_at) - render_ms
    adjusted = (completed_at - max(created_at, free)) - render_ms, where ``free`` is when the
               worker that claimed the project had finished its previous project (see
               worker_free_times); = pickup + render_gap + finish
    cumulative (diagnostic) = raw minus only the time between created_at and started_at during
               which all workers held other projects: it also charges the project with every
               hand-over gap (completed_at -> next started_at) of the projects queued ahead of it.
    """
    done = [t for t in map(Timeline.of, everything) if t is not None]
    free = worker_free_times(done, workers)
    all_held = all_busy_measure([(t.started, t.completed) for t in done], workers)
    result = Overhead(projects=len(ids), failed=len(ids - {t.id for t in done}))
    for t in done:
        if t.id not in ids:
            continue
        raw = (t.completed - t.created) - t.render
        ready = max(t.created, free[t.id])
        result.raw_ms.append(raw * 1000)
        result.adjusted_ms.append((t.completed - ready - t.render) * 1000)
        result.pickup_ms.append((t.started - ready) * 1000)
        result.render_gap_ms.append((t.rendered - t.started - t.render) * 1000)
        result.finish_ms.append((t.completed - t.rendered) * 1000)
        result.cumulative_ms.append((raw - all_held(t.created, t.started)) * 1000)
        result.render_ms.append(t.render * 1000)
    return result


# --------------------------------------------------------------------------------------------
# Preview render, in process


def preview_render_ms(renders: int) -> tuple[list[float], str]:
    """Render times (ms) of single 1024x1024 preview images, PNG encoding included, and how they
    were taken: with benchmarks/preview_render.py's ``measure`` when it is there (it cycles the
    compositions and prompts), else with the default style tool and varying seeds."""
    from darkroom.core.catalog import Catalog
    from darkroom.engine.base import RenderRequest, StyleHint
    from darkroom.engine.preview import PreviewBackend

    backend = PreviewBackend()
    try:
        from preview_render import measure  # benchmarks/ is on sys.path when run as a script
    except ImportError:
        pass
    else:
        return measure(backend, 1024, 1024, renders), "benchmarks/preview_render.py measure()"

    catalog = Catalog.load()
    hint: StyleHint = catalog.style_hint(catalog.default_tool)

    def request(seed: int) -> RenderRequest:
        return RenderRequest(
            project_id="img_benchmark0",
            model="flux-schnell",
            prompt=PROMPT,
            user_prompt=PROMPT,
            style=hint,
            width=1024,
            height=1024,
            count=1,
            seed=seed,
        )

    for seed in range(3):  # warm up fonts and caches
        backend.render(request(10_000 + seed))
    times = []
    for seed in range(renders):
        t0 = time.perf_counter()
        images = backend.render(request(seed))
        times.append((time.perf_counter() - t0) * 1000)
        assert len(images) == 1 and images[0][:8] == b"\x89PNG\r\n\x1a\n"
    return times, "default style tool, varying seeds"


# --------------------------------------------------------------------------------------------
# The run


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def created_ids(result: LoadResult) -> set[str]:
    return {json.loads(body)["id"] for body in result.bodies if body.startswith(b'{"id"')}


def phase(
    runner: asyncio.Runner, server: Server, clients: int, seconds: float, cap: int
) -> tuple[LoadResult, Overhead, float]:
    raw = create_request(server.port, server.key)
    load = run_load(server.port, raw, clients, seconds, keep_bodies=True, max_requests=cap)
    result = runner.run(load)
    drained = server.drain()
    ids = created_ids(result)
    return result, overheads(server.projects(), ids, server.workers), drained


def throughput(
    runner: asyncio.Runner, server: Server, clients: int, seconds: int, wrk: str | None, tmp: Path
) -> tuple[LoadResult, LoadResult]:
    """healthz then create, back to back, same client and concurrency."""
    measured = []
    for name in ("healthz", "create"):
        server_cpu = server.cpu_seconds()
        machine_cpu = machine_busy_seconds()
        if wrk is not None:
            script = None
            url = f"{server.url}/healthz"
            if name == "create":
                script = tmp / "create.lua"
                lua_body = json.dumps(CREATE_BODY.decode())
                script.write_text(WRK_CREATE_SCRIPT.format(body=lua_body, key=server.key))
                url = f"{server.url}/v1/ai-image-generator"
            result = run_wrk(wrk, url, clients, seconds, script)
        else:
            if name == "create":
                raw = create_request(server.port, server.key)
            else:
                raw = healthz_request(server.port)
            result = runner.run(run_load(server.port, raw, clients, seconds, keep_bodies=False))
        result.server_cpu_s = server.cpu_seconds() - server_cpu
        result.machine_cpu_s = machine_busy_seconds() - machine_cpu
        measured.append(result)
        if name == "healthz":
            time.sleep(0.5)
    return measured[0], measured[1]


def report_log_problems(path: Path) -> None:
    """Summarise the server log's errors: requests the load generator abandoned when a timed run
    ended (wrk closes its connections with requests in flight: starlette's ClientDisconnect), and
    the first of any others, in full."""
    lines = path.read_text(errors="replace").splitlines()
    blocks: list[list[str]] = []
    for line in lines:
        if " ERROR " in line or line.startswith("ERROR:"):
            blocks.append([line])
        elif blocks and (line.startswith((" ", "Traceback", "During", "The above")) or not line):
            blocks[-1].append(line)
    aborted = [b for b in blocks if any("ClientDisconnect" in line for line in b)]
    others = [b for b in blocks if b not in aborted]
    if aborted:
        print(
            f"  note: the server logged {len(aborted)} error entries for requests the client "
            "abandoned at the end of a timed run (starlette ClientDisconnect reading the body)"
        )
    if others:
        print(f"  warning: {len(others)} other errors in the server log; the first:")
        print("\n".join(others[0][:60]))


def row(label: str, value: str, target: str = "", met: bool | None = None) -> str:
    verdict = "" if met is None else ("MET" if met else "MISSED")
    return f"  {label:<58} {value:>17}  {target:<13} {verdict}"


def cpu_note(result: LoadResult) -> str:
    others = result.machine_cpu_s - result.server_cpu_s - result.client_cpu_s
    return (
        f"CPU: client {100 * result.client_cpu_s / result.seconds:.0f}%, "
        f"server {100 * result.server_cpu_s / result.seconds:.0f}%, "
        f"everything else {100 * max(0.0, others) / result.seconds:.0f}% "
        f"(100% = one core, {os.cpu_count()} cores)"
    )


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter phases")
    parser.add_argument("--workers", type=int, default=2, help="server render workers (2)")
    parser.add_argument(
        "--client",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="throughput load generator: wrk when installed (auto), or the asyncio client",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    wrk = shutil.which("wrk") if args.client in ("auto", "wrk") else None
    if args.client == "wrk" and wrk is None:
        parser.error("wrk is not installed")

    print_run_header("darkroom API overhead benchmark")
    print(
        f"  note: client and server share these {os.cpu_count()} CPUs; every figure below "
        "includes that contention. No GPU is used or measured."
    )

    print(f"\n[1/5] preview render, 1024x1024, in process ({plan.renders} timed renders)")
    render_times, render_how = preview_render_ms(plan.renders)
    render_median = statistics.median(render_times)
    print(
        f"  median {render_median:.1f} ms, p90 {percentile(render_times, 90):.1f} ms, "
        f"min {min(render_times):.1f} ms ({render_how})"
    )

    with tempfile.TemporaryDirectory(prefix="darkroom-bench-") as tmp_name:
        tmp = Path(tmp_name)
        server = Server(tmp / "data", args.workers)
        try:
            print(f"  server: {shlex.join(server.command)} (pid {server.proc.pid})")
            print(f"  server settings: {effective_settings(server.workers)}")
            with asyncio.Runner(loop_factory=new_event_loop) as runner:
                # Warm up: first requests pay for statement compilation and imports.
                runner.run(
                    run_load(
                        server.port,
                        create_request(server.port, server.key),
                        4,
                        0.5,
                        keep_bodies=False,
                    )
                )
                server.drain()

                phases: dict[int, tuple[LoadResult, Overhead]] = {}
                for clients in (1, 32):
                    who = "1 client" if clients == 1 else f"{clients} clients"
                    print(
                        f"\n[{2 if clients == 1 else 3}/5] create latency and overhead, {who}, "
                        f"{plan.latency_seconds:.0f} s or {plan.latency_cap} creates"
                    )
                    result, over, drained = phase(
                        runner, server, clients, plan.latency_seconds, plan.latency_cap
                    )
                    phases[clients] = (result, over)
                    print(
                        f"  {result.requests} creates in {result.seconds:.1f} s "
                        f"({result.rps:.0f}/s OK, {result.errors} not 200), queue drained "
                        f"{drained:.1f} s after the phase; {over.failed} projects not complete"
                    )

                client_name = "wrk -t1" if wrk else "asyncio keep-alive client"
                print(
                    f"\n[4/5] throughput, embedded server, {client_name}, 32 connections, "
                    f"{plan.throughput_seconds} s each, healthz then create"
                )
                health, create = throughput(runner, server, 32, plan.throughput_seconds, wrk, tmp)
                for name, measured in (("healthz", health), ("create", create)):
                    print(
                        f"  {name + ':':8} {measured.rps:.0f} rps ({measured.errors} not 200); "
                        f"{cpu_note(measured)}"
                    )
        finally:
            server.stop()
            report_log_problems(server.log_path)

        # The create endpoint by itself: an API-only node (no render workers in its process,
        # as when rendering runs on GPU worker processes), same client and concurrency.
        api = Server(tmp / "api-data", 0)
        try:
            print(
                f"\n[5/5] throughput of the endpoint alone, API-only node (DARKROOM_WORKERS=0), "
                f"{client_name}, 32 connections, {plan.throughput_seconds} s each"
            )
            with asyncio.Runner(loop_factory=new_event_loop) as runner:
                runner.run(
                    run_load(api.port, create_request(api.port, api.key), 4, 0.5, keep_bodies=False)
                )
                api_health, api_create = throughput(
                    runner, api, 32, plan.throughput_seconds, wrk, tmp
                )
                for name, measured in (("healthz", api_health), ("create", api_create)):
                    print(
                        f"  {name + ':':8} {measured.rps:.0f} rps ({measured.errors} not 200); "
                        f"{cpu_note(measured)}"
                    )
                # The load generator cross-check, here where no render backlog builds up.
                cross: tuple[LoadResult, LoadResult] | None = None
                if wrk and plan.cross_check:
                    cross = throughput(runner, api, 32, plan.throughput_seconds, None, tmp)
                    print(
                        f"  cross-check with the asyncio client: healthz {cross[0].rps:.0f} rps, "
                        f"create {cross[1].rps:.0f} rps, ratio "
                        f"{cross[1].rps / cross[0].rps:.2f}; {cpu_note(cross[0])} (healthz)"
                    )
        finally:
            api.stop()
            report_log_problems(api.log_path)

    print(f"  load average at end (1/5/15 min): {load_average()}")
    ratio = api_create.rps / api_health.rps if api_health.rps else 0.0
    embedded_ratio = create.rps / health.rps if health.rps else 0.0
    one, over1 = phases[1]
    many, over32 = phases[32]
    p99_adj = percentile(over32.adjusted_ms, 99)
    print("\nResults (ms unless stated; p50 / p99)")
    print(row("metric", "value", "target", None))
    print(row("create latency, 1 client", p50_p99(one.latencies_ms)))
    print(row("create latency, 32 clients", p50_p99(many.latencies_ms)))
    print(row("create->complete overhead raw, 1 client", p50_p99(over1.raw_ms)))
    print(row("create->complete overhead excl. worker wait, 1 client", p50_p99(over1.adjusted_ms)))
    print(row("create->complete overhead raw, 32 clients", p50_p99(over32.raw_ms)))
    print(
        row(
            "create->complete overhead excl. worker wait, 32 clients",
            p50_p99(over32.adjusted_ms),
            f"p99 <= {TARGET_OVERHEAD_P99_MS:.0f}",
            p99_adj <= TARGET_OVERHEAD_P99_MS,
        )
    )
    print(row("render_ms of those 640px projects, 32 clients", p50_p99(over32.render_ms)))
    client_label = "wrk" if wrk else "asyncio client"
    print(
        row(f"API-only node: GET /healthz, 32 conns, {client_label} (rps)", f"{api_health.rps:.0f}")
    )
    print(
        row(f"API-only node: POST create, 32 conns, {client_label} (rps)", f"{api_create.rps:.0f}")
    )
    print(
        row(
            "create / healthz throughput ratio, API-only node",
            f"{ratio:.2f}",
            f">= {TARGET_RATIO}",
            ratio >= TARGET_RATIO,
        )
    )
    print(row(f"embedded: GET /healthz, 32 conns, {client_label} (rps)", f"{health.rps:.0f}"))
    print(row(f"embedded: POST create, 32 conns, {client_label} (rps)", f"{create.rps:.0f}"))
    print(
        row(
            "create / healthz ratio, embedded (also rendering every image)", f"{embedded_ratio:.2f}"
        )
    )
    if cross is not None:
        cross_ratio = cross[1].rps / cross[0].rps if cross[0].rps else 0.0
        print(
            row(
                "API-only node, asyncio client cross-check: rps, ratio",
                f"{cross[0].rps:.0f} / {cross[1].rps:.0f}, {cross_ratio:.2f}",
            )
        )
    print(
        row(
            "preview render 1024x1024, median of " + str(plan.renders),
            f"{render_median:.1f}",
            f"<= {TARGET_RENDER_MS:.0f}",
            render_median <= TARGET_RENDER_MS,
        )
    )

    print("\nWhere the 32-client overhead (excl. worker wait) goes, p50 / p99:")
    print(row("pickup: started - max(created, worker free)", p50_p99(over32.pickup_ms)))
    print(row("render accounting: (rendered - started) - render_ms", p50_p99(over32.render_gap_ms)))
    print(row("finish: completed - rendered", p50_p99(over32.finish_ms)))
    print(
        row(
            "diagnostic: cumulative (charges hand-overs queued ahead)",
            p50_p99(over32.cumulative_ms),
        )
    )
    print(
        "\nOverhead per project: raw = (completed_at - created_at) - render_ms; 'excl. worker "
        "wait' =\n(completed_at - max(created_at, free)) - render_ms, where free = when the worker "
        "that claimed the\nproject finished its previous one (claims replayed in started_at order "
        f"over {args.workers} workers).\nTimestamps are read from the projects table after the "
        "queue drained."
    )
    print(
        "Throughput: 'API-only node' measures the create endpoint alone (DARKROOM_WORKERS=0: the\n"
        "projects are committed and queued, rendering is left to worker processes); 'embedded'\n"
        "also renders every accepted project on the same 2 cores (worker threads sharing the GIL)."
    )
    if health.errors or create.errors or one.errors or many.errors:
        print("warning: some requests did not answer 200; see the counts above")
    return 0


if __name__ == "__main__":
    sys.exit(main())
