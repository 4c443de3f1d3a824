"""Images in object storage: a local directory against an S3 bucket (Ceph's radosgw on loopback),
side by side in one run.

Starts a throwaway S3 server for the run (``tests/radosgw.py``: one monitor, one OSD keeping its
data in memory (memstore), radosgw, all on 127.0.0.1) and stops it at the end. Images are
1024x1024 PNGs of two kinds: **preview**, darkroom's preview backend's renders (flat shapes and
gradients: 50-130 KB), and **photo-like**, the same renders with grain added (``sigma`` 12-13) so
that they compress as a photograph or a diffusion model's render does (about 1.5 MB, the size of a
1024x1024 PNG from SDXL or FLUX). Phases:

1. **render end → stored and linked** (in this process, no server): for each of ``N`` projects
   of ``K`` = 4 images, the time to store the 4 images as a worker does
   (``ProjectFiles.save_outputs``: all at once; and, for comparison, one after another) plus
   make the 4 download links as ``Downloads.url`` does (a presigned URL of the bucket, or
   darkroom's ``URLSigner.sign`` link), in three stores: the local directory, the bucket with
   ``DARKROOM_STORAGE_LINKS=presigned`` and with ``proxy``. Projects
   alternate between the stores (less drift from other load); each project's objects are removed
   after it is timed (untimed), so the OSD's memory stays small.
2. **download throughput**: three ``darkroom serve`` subprocesses (SQLite, 2 render workers, the
   preview backend, rate limiting off, log level warning) up at once: one keeping its images in
   its data directory (darkroom sends the file: ``FileResponse``), one on the bucket with
   presigned links (the client downloads from radosgw directly), and one on the same bucket and
   the same SQLite file with ``proxy`` links (darkroom streams from radosgw; no workers). The
   first two render the projects (4 images, 1k, flux-schnell), whose stored objects are then
   replaced by the photo-like images for the photo-like rows; the links come from one
   ``GET /v1/image-projects/{id}`` per project, and every link is checked once (status, bytes).
   Then ``C`` clients (one asyncio httpx client, ``C`` keep-alive connections, uvloop) download
   the links round robin for ``T`` seconds per mode and image kind, in rounds that alternate the
   modes (``N`` 50, ``C`` 8, ``T`` 5 s in 2 rounds; ``--quick``: 20, 8, 2 s). Reported: MB/s,
   downloads/s, latency per download, and CPU seconds per 100 downloads of the darkroom server
   process, of radosgw plus the OSD, and of the client
   (``/proc/PID/stat``, and ``time.process_time`` for the client).

It prints the machine, the load average, then one table: each figure for the local directory,
S3 with presigned links and S3 with proxy links, and the ratios to local.

Run from the repository root::

    .venv/bin/python benchmarks/storage.py            # about 80 s on a busy 2-core machine
    .venv/bin/python benchmarks/storage.py --quick    # 20 projects, 2 s of downloads per row

Needs Ceph (``scripts/ensure-ceph``: ``ceph-mon ceph-osd radosgw ceph-common``) and boto3. Only
127.0.0.1 is used; the client, darkroom, radosgw and the OSD share the machine's CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from PIL import Image, ImageChops

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # tests/: the S3 server

from tests.radosgw import RadosGateway, require_ceph  # noqa: E402

from api_overhead import (  # noqa: E402
    ServeProcess,
    code_revision,
    load_average,
    machine,
    machine_busy_seconds,
    new_event_loop,
    percentile,
    process_cpu_seconds,
)
from darkroom.engine.base import RenderRequest, StyleHint  # noqa: E402
from darkroom.engine.preview import COMPOSITIONS, PreviewBackend  # noqa: E402
from darkroom.storage.files import ProjectFiles, new_attempt  # noqa: E402
from darkroom.storage.location import open_store  # noqa: E402
from darkroom.storage.objects import ObjectStore  # noqa: E402
from darkroom.storage.signing import URLSigner  # noqa: E402

BUCKET = "darkroom-bench"
K = 4  # images per project
SIDE = 1024
GRAIN_SIGMA = 12  # photo-like: about 1.5 MB per 1024x1024 PNG
TTL = 24 * 3600  # darkroom's default download_ttl_seconds
SECRET = "storage-bench-secret"
PROMPT = "a lighthouse at dusk over a calm sea, long exposure"
MODES = ("local", "presigned", "proxy")
MODE_TITLES = {"local": "local dir", "presigned": "S3 presigned", "proxy": "S3 proxy"}
KINDS = ("preview", "photo")


@dataclass(frozen=True)
class Plan:
    projects: int  # phase 1: timed projects per store and image kind
    warmup: int  # phase 1: untimed projects first
    clients: int  # phase 2: concurrent downloads
    seconds: float  # phase 2: per mode and image kind, over all rounds
    rounds: int  # phase 2: the modes alternate this many times
    download_projects: int  # phase 2: projects per image kind on each server


FULL = Plan(projects=50, warmup=3, clients=8, seconds=5.0, rounds=2, download_projects=3)
QUICK = Plan(projects=20, warmup=2, clients=8, seconds=2.0, rounds=1, download_projects=2)


# --------------------------------------------------------------------------------------------
# Images


def preview_images() -> list[bytes]:
    """K preview renders at 1024x1024, each with another composition and seed."""
    backend = PreviewBackend()
    palette = ("#264653", "#2a9d8f", "#e9c46a", "#f4a261", "#e76f51")
    images = []
    for i in range(K):
        style = StyleHint("bench", palette, COMPOSITIONS[i % len(COMPOSITIONS)])
        request = RenderRequest("bench", "flux-schnell", PROMPT, PROMPT, style, SIDE, SIDE, 1, i)
        images.append(backend.render(request)[0])
    return images


def photo_like(png: bytes, seed: int) -> bytes:
    """The render with Gaussian grain: a PNG that compresses as a photograph does."""
    picture = Image.open(io.BytesIO(png)).convert("RGB")
    # effect_noise draws from the C library's rand(): the same picture each run is not promised.
    noise = Image.effect_noise(picture.size, GRAIN_SIGMA + seed % 2).convert("RGB")
    buffer = io.BytesIO()
    ImageChops.add(picture, noise, scale=1.0, offset=-128).save(buffer, format="PNG")
    return buffer.getvalue()


def sizes(images: Sequence[bytes]) -> str:
    return f"{sum(map(len, images)) / len(images) / 1000:,.0f} KB"


# --------------------------------------------------------------------------------------------
# Phase 1: render end -> stored and linked


@dataclass(frozen=True)
class StoredKey:
    key: str | None


@dataclass(frozen=True)
class BenchProject:
    """What ProjectFiles needs to know of a complete project."""

    id: str
    stored_images: tuple[StoredKey, ...]
    image_count: int = K
    output_format: str = "png"
    source_count: int = 0
    has_mask: bool = False


def new_project_id() -> str:
    return "img_" + secrets.token_hex(8)


def store_one_by_one(files: ProjectFiles, images: Sequence[bytes]) -> float:
    """Seconds to store the images of one new project one after another (as the worker did
    before it stored them at once); they are removed afterwards, untimed."""
    project_id, attempt = new_project_id(), new_attempt()
    start = time.perf_counter()
    keys = [
        files.save_output(project_id, attempt, n, data, "png")
        for n, data in enumerate(images, start=1)
    ]
    seconds = time.perf_counter() - start
    files.store.delete(keys)
    return seconds


def store_and_link(
    files: ProjectFiles, signer: URLSigner, images: Sequence[bytes]
) -> tuple[float, float, list[str]]:
    """Seconds to store the images of one new project as the worker does (all at once:
    ``ProjectFiles.save_outputs``), seconds to make their links; the keys."""
    project_id = new_project_id()
    attempt = new_attempt()
    start = time.perf_counter()
    keys = files.save_outputs(project_id, attempt, images, "png")
    stored = time.perf_counter()
    project = BenchProject(project_id, tuple(StoredKey(key) for key in keys))
    expires = int(time.time()) + TTL
    links = [
        # As Downloads.url does: the bucket's presigned URL, else darkroom's signed link.
        files.presign_output(project, n, TTL) or signer.sign(files.output_name(project, n), expires)
        for n in range(1, K + 1)
    ]
    linked = time.perf_counter()
    assert len(links) == K and all(links)
    return stored - start, linked - stored, keys


@dataclass
class StoreTimes:
    store: list[float] = field(default_factory=list)
    link: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    one_by_one: list[float] = field(default_factory=list)


def phase_store(
    stores: dict[str, ObjectStore], images: dict[str, list[bytes]], plan: Plan
) -> dict[tuple[str, str], StoreTimes]:
    signer = URLSigner(SECRET.encode(), "http://127.0.0.1:8000")
    files = {mode: ProjectFiles(store) for mode, store in stores.items()}
    times = {(mode, kind): StoreTimes() for mode in stores for kind in images}
    for i in range(plan.warmup + plan.projects):
        for kind, pictures in images.items():
            for mode in stores:  # alternating: drift from other load hits every store alike
                stored, linked, keys = store_and_link(files[mode], signer, pictures)
                stores[mode].delete(keys)
                sequential = store_one_by_one(files[mode], pictures)
                if i >= plan.warmup:
                    entry = times[mode, kind]
                    entry.one_by_one.append(sequential * 1000)
                    entry.store.append(stored * 1000)
                    entry.link.append(linked * 1000)
                    entry.total.append((stored + linked) * 1000)
    return times


# --------------------------------------------------------------------------------------------
# Phase 2: darkroom nodes and downloads


class Node(ServeProcess):
    """``darkroom serve`` in a subprocess, on loopback."""

    def __init__(self, name: str, data_dir: Path, env: dict[str, str]) -> None:
        data_dir.mkdir(parents=True)
        environment = {
            "DARKROOM_LOG_LEVEL": "warning",
            "DARKROOM_SECRET_KEY": SECRET,
            "DARKROOM_DATABASE_URL": "",
            "DARKROOM_STORAGE_URL": "",
            "DARKROOM_STORAGE_LINKS": "presigned",
            "DARKROOM_WORKERS": "2",
            **env,
        }
        log_path = data_dir.parent / f"{name}.log"
        super().__init__(["--data-dir", str(data_dir)], environment, log_path, name)
        # A node on another node's database finds the development account there: no key file.
        key_file = data_dir / "dev-api-key"
        self.key = key_file.read_text().strip() if key_file.exists() else ""


def create_projects(node: Node, count: int) -> list[str]:
    """``count`` complete projects of K 1k images; their ids."""
    headers = {"Authorization": f"Bearer {node.key}"}
    body = {"image_count": K, "model": "flux-schnell", "resolution": "1k"}
    ids = []
    with httpx.Client(base_url=node.url, headers=headers, timeout=30) as client:
        for i in range(count):
            answer = client.post(
                "/v1/ai-image-generator", json={**body, "style": {"prompt": f"{PROMPT} {i}"}}
            )
            answer.raise_for_status()
            ids.append(answer.json()["id"])
        deadline = time.monotonic() + 120
        for project_id in ids:
            while (status := project(client, project_id)["status"]) != "complete":
                if status in ("error", "canceled") or time.monotonic() > deadline:
                    raise RuntimeError(f"project {project_id} on {node.name} is {status}")
                time.sleep(0.05)
    return ids


def project(client: httpx.Client, project_id: str) -> dict[str, object]:
    answer = client.get(f"/v1/image-projects/{project_id}")
    answer.raise_for_status()
    body: dict[str, object] = answer.json()
    return body


def replace_images(store: ObjectStore, ids: Sequence[str], images: Sequence[bytes]) -> None:
    """Image n of each project becomes ``images[n - 1]`` in storage (the database's sizes and
    digests are not read by downloads)."""
    for project_id in ids:
        keys = store.list(f"images/{project_id}/")
        assert len(keys) == K, keys
        for key in keys:
            store.put(key, images[image_number(key) - 1], content_type="image/png")


def links(node: Node, key: str, ids: Sequence[str]) -> list[str]:
    """The download links of the projects, as a client gets them."""
    with httpx.Client(
        base_url=node.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as client:
        urls = []
        for project_id in ids:
            downloads = project(client, project_id)["downloads"]
            assert isinstance(downloads, list) and len(downloads) == K
            urls += [str(d["url"]) for d in downloads]
    return urls


def stored_images(store: ObjectStore, ids: Sequence[str]) -> list[bytes]:
    """The stored bytes of image 1..K of each project, in that order."""
    images = []
    for project_id in ids:
        keys = store.list(f"images/{project_id}/")
        images += [store.get(key) for key in sorted(keys, key=image_number)]
    return images


def image_number(key: str) -> int:
    """n of ``images/<id>/<attempt>/<id>-<n>.png``."""
    return int(key.rsplit("-", 1)[1].split(".")[0])


def check_links(urls: Sequence[str], expected: Sequence[bytes], prefix: str) -> None:
    """Every link starts with ``prefix`` and serves the bytes stored for it."""
    assert len(urls) == len(expected)
    with httpx.Client(timeout=30) as client:
        for url, data in zip(urls, expected, strict=True):
            assert url.startswith(prefix), f"{url} does not start with {prefix}"
            answer = client.get(url)
            assert answer.status_code == 200, (url, answer.status_code, answer.text[:300])
            assert answer.content == data, f"{url}: other bytes than stored"


@dataclass
class Load:
    seconds: float = 0.0
    downloads: int = 0
    errors: int = 0
    bytes: int = 0
    latencies: list[float] = field(default_factory=list)  # ms
    server_cpu: float = 0.0  # darkroom's node
    gateway_cpu: float = 0.0  # radosgw and the OSD
    client_cpu: float = 0.0
    machine_cpu: float = 0.0  # every process on the machine

    def per_100(self, cpu: float) -> float:
        return 100 * cpu / self.downloads if self.downloads else float("nan")


def cpu_sample(node: Node, gateway_pids: Sequence[int]) -> tuple[float, float, float, float]:
    """CPU seconds so far: darkroom's node, radosgw and the OSD, this process, the machine."""
    gateway = sum(process_cpu_seconds(pid) for pid in gateway_pids)
    return node.cpu_seconds(), gateway, time.process_time(), machine_busy_seconds()


async def download(
    node: Node, urls: Sequence[str], gateway_pids: Sequence[int], plan: Plan, load: Load
) -> None:
    """One timed run: ``plan.clients`` downloads at a time, round robin over ``urls``."""
    clients = plan.clients
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        # Connections first, outside the timed part.
        await asyncio.gather(*(client.get(urls[i % len(urls)]) for i in range(clients)))
        deadline = loop.time() + plan.seconds / plan.rounds

        async def one(first: int) -> None:
            i = first
            while loop.time() < deadline:
                start = time.perf_counter()
                answer = await client.get(urls[i % len(urls)])
                load.latencies.append((time.perf_counter() - start) * 1000)
                if answer.status_code == 200:
                    load.downloads += 1
                    load.bytes += len(answer.content)
                else:
                    load.errors += 1
                i += clients

        before = cpu_sample(node, gateway_pids)
        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(clients)))
        load.seconds += time.perf_counter() - start
        after = cpu_sample(node, gateway_pids)
    load.server_cpu += after[0] - before[0]
    load.gateway_cpu += after[1] - before[1]
    load.client_cpu += after[2] - before[2]
    load.machine_cpu += after[3] - before[3]


# --------------------------------------------------------------------------------------------
# The run


def cell(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def ratio(value: float, base: float) -> str:
    if base <= 0 or value != value or base != base:  # nan
        return "-"
    return f"{value / base:.2f}x"


def table_row(label: str, values: Sequence[float], digits: int = 1, ratios: bool = True) -> str:
    cells = [cell(v, digits) for v in values]
    extra = [ratio(v, values[0]) for v in values[1:]] if ratios else ["", ""]
    return f"| {label} | " + " | ".join(cells + extra) + " |"


@contextlib.contextmanager
def gateway_running() -> Iterator[RadosGateway]:
    gateway = RadosGateway()
    gateway.start()
    try:
        gateway.create_bucket(BUCKET)
        yield gateway
    finally:
        gateway.stop()


def interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def start_nodes(
    root: Path, gateway: RadosGateway, plan: Plan, photos: list[bytes], nodes: list[Node]
) -> tuple[dict[str, Node], dict[tuple[str, str], list[str]]]:
    """The three nodes (appended to ``nodes`` as they start), their projects rendered (and, for
    the photo-like kind, their objects replaced), and each mode's links, checked."""
    s3 = f"s3://{BUCKET}/downloads"
    local = Node("local", root / "local" / "data", {})
    nodes.append(local)
    presigned = Node("presigned", root / "s3" / "data", {"DARKROOM_STORAGE_URL": s3})
    nodes.append(presigned)
    proxy_env = {
        "DARKROOM_STORAGE_URL": s3,
        "DARKROOM_STORAGE_LINKS": "proxy",
        # The presigned node's database: the same projects, links of its own.
        "DARKROOM_DATABASE_URL": f"sqlite:///{root / 's3' / 'data' / 'darkroom.sqlite3'}",
        "DARKROOM_WORKERS": "0",
    }
    proxy = Node("proxy", root / "proxy" / "data", proxy_env)
    nodes.append(proxy)
    served = {"local": local, "presigned": presigned, "proxy": proxy}
    renderers = (
        (local, open_store(str(root / "local" / "data"), root), ("local",)),
        (presigned, open_store(s3, root, links="proxy"), ("presigned", "proxy")),
    )
    urls: dict[tuple[str, str], list[str]] = {}
    for kind in KINDS:
        for renderer, store, modes in renderers:
            ids = create_projects(renderer, plan.download_projects)
            if kind == "photo":
                replace_images(store, ids, photos)
            expected = stored_images(store, ids)
            assert kind == "preview" or expected == photos * len(ids)
            for mode in modes:
                got = links(served[mode], renderer.key, ids)
                prefix = gateway.endpoint if mode == "presigned" else served[mode].url
                check_links(got, expected, prefix)
                urls[mode, kind] = got
    return served, urls


def log_problems(node: Node) -> None:
    lines = node.log_path.read_text(errors="replace").splitlines()
    problems = [line for line in lines if "ERROR" in line or "Traceback" in line]
    if problems:
        print(f"  warning: {node.name}'s log has {len(problems)} error lines; the first:")
        print("\n".join(f"    {line}" for line in problems[:3]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer projects, shorter downloads")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    require_ceph()
    signal.signal(signal.SIGTERM, interrupt)  # the servers stop on `timeout` too
    began = time.monotonic()
    print(machine())
    print(code_revision())
    print(f"load average at start: {load_average()}")
    print(f"plan: {plan}")

    previews = preview_images()
    photos = [photo_like(png, n) for n, png in enumerate(previews)]
    images = {"preview": previews, "photo": photos}
    print(f"images: 1024x1024 PNG, preview {sizes(previews)}, photo-like {sizes(photos)} (mean)")

    nodes: list[Node] = []
    with tempfile.TemporaryDirectory(prefix="dr-storage-") as tmp, gateway_running() as gateway:
        root = Path(tmp)
        os.environ.update(gateway.env())
        rados = [pid for name in ("client.rgw", "osd.0") if (pid := gateway._pid(name))]
        took = time.monotonic() - began
        print(f"S3: radosgw at {gateway.endpoint} (memstore), up after {took:.0f} s")
        try:
            t = time.monotonic()
            stores = {
                "local": open_store(str(root / "phase1"), root),
                "presigned": open_store(f"s3://{BUCKET}/phase1", root, links="presigned"),
                "proxy": open_store(f"s3://{BUCKET}/phase1", root, links="proxy"),
            }
            stored = phase_store(stores, images, plan)
            took = time.monotonic() - t
            print(f"[1/2] {plan.projects} projects per store and image kind: {took:.0f} s")

            t = time.monotonic()
            served, urls = start_nodes(root, gateway, plan, photos, nodes)
            took = time.monotonic() - t
            print(f"[2/2] nodes started, projects rendered, links checked: {took:.0f} s")
            t = time.monotonic()
            loads = {(mode, kind): Load() for mode in MODES for kind in KINDS}
            with asyncio.Runner(loop_factory=new_event_loop) as runner:
                for _round in range(plan.rounds):
                    for kind in KINDS:
                        for mode in MODES:
                            load = loads[mode, kind]
                            runner.run(download(served[mode], urls[mode, kind], rados, plan, load))
            print(f"      downloads: {time.monotonic() - t:.0f} s")
        finally:
            for node in reversed(nodes):
                node.stop()
            for node in nodes:
                log_problems(node)

    report(plan, images, stored, loads)
    print(f"\nload average at end: {load_average()}; whole run {time.monotonic() - began:.0f} s")
    return 0


def report(
    plan: Plan,
    images: dict[str, list[bytes]],
    stored: dict[tuple[str, str], StoreTimes],
    loads: dict[tuple[str, str], Load],
) -> None:
    titles = [MODE_TITLES[m] for m in MODES]
    print()
    print(f"| metric | {' | '.join(titles)} | presigned / local | proxy / local |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind in KINDS:
        what = f"{kind} ({sizes(images[kind])})"
        t = [stored[m, kind] for m in MODES]
        print(f"| **1. store {K} + {K} links, {what}, ms** | | | | | |")
        print(table_row("p50", [percentile(x.total, 50) for x in t], 2))
        print(table_row("p95", [percentile(x.total, 95) for x in t], 2))
        print(table_row(f"of which store {K}, p50", [percentile(x.store, 50) for x in t], 2))
        print(
            table_row(
                f"store {K} one after another, p50", [percentile(x.one_by_one, 50) for x in t], 2
            )
        )
        print(table_row(f"of which {K} links, p50", [percentile(x.link, 50) for x in t], 3))
        extra = [percentile(x.total, 50) - percentile(t[0].total, 50) for x in t]
        print(table_row("S3's extra per project, p50", extra, 2, ratios=False))
    for kind in KINDS:
        what = f"{kind} ({sizes(images[kind])})"
        d = [loads[m, kind] for m in MODES]
        print(f"| **2. downloads, {plan.clients} clients, {what}** | | | | | |")
        print(table_row("MB/s", [x.bytes / x.seconds / 1e6 for x in d]))
        print(table_row("downloads/s", [x.downloads / x.seconds for x in d]))
        print(table_row("latency p50, ms", [percentile(x.latencies, 50) for x in d]))
        print(table_row("latency p99, ms", [percentile(x.latencies, 99) for x in d]))
        print(table_row("darkroom CPU s / 100 downloads", [x.per_100(x.server_cpu) for x in d], 3))
        print(table_row("radosgw + OSD CPU s / 100", [x.per_100(x.gateway_cpu) for x in d], 3))
        print(table_row("client CPU s / 100", [x.per_100(x.client_cpu) for x in d], 3))
        print(
            table_row(
                "machine busy, % of its CPUs",
                [100 * x.machine_cpu / x.seconds / (os.cpu_count() or 1) for x in d],
                0,
                ratios=False,
            )
        )
        counts = [f"{x.downloads} / {x.errors}" for x in d]
        print(f"| downloads / errors | {' | '.join(counts)} | | |")


if __name__ == "__main__":
    sys.exit(main())
