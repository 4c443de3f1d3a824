"""darkroom as an operator runs it on several machines, in subprocesses on this one: API nodes
(``darkroom serve --workers 0``) and render workers (``darkroom worker``), each with a data
directory of its own, on one database and one storage: a bucket on S3 runs (the
``storage_url`` setting), otherwise a directory they share."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import create_engine, select

from darkroom.store.tables import nodes
from tests.waiting import wait_until

SECRET = "cluster-test-secret"
ADMIN_TOKEN = "cluster-test-admin-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A ``darkroom`` command (``args``), run by ``launcher`` (a module that runs it)."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        log: Path,
        launcher: tuple[str, ...] = ("darkroom.cli.main",),
    ) -> None:
        self.name = name
        self.log = log
        self._out = log.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", *launcher, *args],
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill(self) -> None:
        """``kill -9``: no drain, no goodbye."""
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout)

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)
        self._out.close()


class Cluster:
    def __init__(self, root: Path, database_url: str, **settings: object) -> None:
        self.root = root
        self.database_url = database_url
        self.env = {
            **os.environ,
            "DARKROOM_DATABASE_URL": database_url,
            "DARKROOM_STORAGE_URL": str(root / "shared-files"),
            "DARKROOM_SECRET_KEY": SECRET,
            "DARKROOM_ADMIN_TOKEN": ADMIN_TOKEN,
            "DARKROOM_RATE_LIMIT_PER_MINUTE": "0",
            "DARKROOM_LOG_LEVEL": "info",
        }
        for name, value in settings.items():
            self.env[f"DARKROOM_{name.upper()}"] = str(value)
        self.storage_url = self.env["DARKROOM_STORAGE_URL"]
        self.processes: list[Process] = []
        self.engine = create_engine(database_url)

    def _start(self, name: str, args: list[str]) -> Process:
        data = self.root / name
        data.mkdir(parents=True, exist_ok=True)
        process = Process(
            name, [*args, "--data-dir", str(data)], self.env, self.root / f"{name}.log"
        )
        self.processes.append(process)
        return process

    def api(self, name: str = "api") -> tuple[Process, str]:
        port = free_port()
        process = self._start(name, ["serve", "--workers", "0", "--port", str(port)])
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(f"{url}/readyz"), f"{name} to serve", timeout=60)
        return process, url

    def worker(self, name: str, *args: str) -> Process:
        process = self._start(name, ["worker", *args])
        wait_until(lambda: self.node_of(process), f"{name} to register", timeout=60)
        return process

    def node_of(self, process: Process) -> str | None:
        """The node id of a running process (the newest row with its pid)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(nodes.c.id)
                .where(nodes.c.pid == process.pid, nodes.c.stopped_at.is_(None))
                .order_by(nodes.c.started_at.desc())
            ).first()
        return None if row is None else str(row.id)

    def admin(self, url: str) -> httpx.Client:
        return httpx.Client(
            base_url=f"{url}/admin/v1",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
        )

    def account(self, url: str, credits: int, tier: str = "business") -> str:
        """A new account's API key."""
        with self.admin(url) as admin:
            made = admin.post("/accounts", json={"name": "c", "tier": tier, "credits": credits})
        assert made.status_code == 201, made.text
        return str(made.json()["api_key"])

    def logs(self, prefix: str) -> str:
        return "".join(
            p.read_text(errors="replace") for p in sorted(self.root.glob(f"{prefix}*.log"))
        )

    def close(self) -> None:
        for process in self.processes:
            process.close()
        self.engine.dispose()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def cluster(root: Path, database_url: str, **settings: object) -> Iterator[Cluster]:
    running = Cluster(root, database_url, **settings)
    try:
        yield running
    finally:
        running.close()
