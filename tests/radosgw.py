"""A throwaway S3 server for the tests: a single-node Ceph cluster (one monitor, one OSD keeping
its data in memory) and radosgw in front of it, all on 127.0.0.1 with free ports, and everything
(config, data, logs, pid files, sockets) in one temporary directory that :meth:`stop` removes.

Unlike a mock, radosgw checks signatures and presigned URLs' expiry as S3 does. The binaries
come from Debian's ``ceph-mon ceph-osd radosgw ceph-common`` (``scripts/ensure-ceph``). It runs
as root or as any other user.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config

BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool")
REGION = "us-east-1"
USER = "test"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
# The OSD binds ports in this range (ms_bind_port_min/max): the gateway stays out of it.
OSD_PORTS = range(6800, 7301)
# Stopped one at a time in this order: all at once, the OSD waits for the gone monitor and
# radosgw can hang.
DAEMONS = ("client.rgw", "osd.0", "mon.a")

CONFIG = """\
[global]
fsid = {fsid}
mon host = {mon_addr}
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms mon client mode = crc
auth cluster required = none
auth service required = none
auth client required = none
paxos propose interval = 0.1
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd objectstore = memstore
memstore device bytes = 4294967296
mon data avail crit = 0
keyring = {root}/keyring
run dir = {root}/run
pid file = {root}/run/$name.pid
log file = {root}/log/$name.log
mon cluster log file = {root}/log/cluster.$channel.log
crash dir = {root}/crash
mon data = {root}/mon.$id
osd data = {root}/osd.$id
rgw data = {root}/rgw

[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
"""


def require_ceph() -> None:
    """Raises unless Ceph's binaries are on PATH."""
    if missing := [name for name in BINARIES if shutil.which(name) is None]:
        raise RuntimeError(f"Ceph is not installed ({', '.join(missing)}): run scripts/ensure-ceph")


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port(*, taken: tuple[int, ...] = ()) -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in OSD_PORTS and port not in taken:
            return port


class RadosGateway:
    """One S3 server: :meth:`start`, then :meth:`client` (boto3), :meth:`create_bucket` and
    :meth:`env` (for subprocesses), and :meth:`stop` at the end. One user, whose keys are
    :attr:`access_key` and :attr:`secret_key`, owns the buckets."""

    ENV_NAMES = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")

    def __init__(self) -> None:
        # Short: admin socket paths over 107 characters are dropped.
        self.root = Path(tempfile.mkdtemp(prefix="dr-rgw-", dir="/tmp"))
        self.config = self.root / "ceph.conf"
        self.mon_port = _free_port()
        self.port = _free_port(taken=(self.mon_port,))
        self.fsid = str(uuid.uuid4())
        self.access_key = "DR" + secrets.token_hex(9).upper()
        self.secret_key = secrets.token_hex(20)
        self.region = REGION

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Starts the monitor, the OSD and radosgw, and returns when S3 answers; stops what it
        started and raises when that fails."""
        require_ceph()
        deadline = time.monotonic() + START_TIMEOUT
        monmap = self.root / "monmap"
        try:
            self._write_config()
            self._ceph(
                deadline,
                f"monmaptool --create --fsid {self.fsid} --add a {self._mon_addr} {monmap}",
            )
            self._ceph(deadline, f"ceph-mon -i a --mkfs --monmap {monmap}")
            self._ceph(deadline, "ceph-mon -i a --no-mon-config")
            self._ceph(deadline, f"ceph-osd -i 0 --mkfs --no-mon-config --osd-uuid {uuid.uuid4()}")
            self._ceph(deadline, "ceph-osd -i 0 --no-mon-config")
            # Waits for the cluster, and creates radosgw's pools (about a second).
            self._ceph(
                deadline,
                f"radosgw-admin --no-mon-config user create --uid={USER} --display-name={USER}"
                f" --access-key={self.access_key} --secret-key={self.secret_key}",
            )
            if not _port_is_free(self.port):
                raise RuntimeError(f"port {self.port} is taken: radosgw cannot listen there")
            self._ceph(deadline, "radosgw -n client.rgw --no-mon-config")
            self._wait_ready(deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stops the daemons one at a time and removes the directory (also after a failed or
        partial start)."""
        stuck = [name for name in DAEMONS if not self._terminate(name)]
        logs = self._logs() if stuck else ""
        shutil.rmtree(self.root, ignore_errors=True)
        if stuck:
            raise RuntimeError(f"{', '.join(stuck)} did not stop, even killed:\n{logs}")

    def client(self, *, secret_key: str | None = None) -> Any:
        """A boto3 S3 client (SigV4, path-style addressing); ``secret_key`` replaces the right one,
        to see requests refused."""
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key if secret_key is None else secret_key,
            region_name=self.region,
            config=config,
        )

    def create_bucket(self, name: str) -> None:
        """A new bucket (3 characters at least)."""
        self.client().create_bucket(Bucket=name)

    def env(self) -> dict[str, str]:
        """Environment for a subprocess using this server through an AWS SDK."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    @property
    def _mon_addr(self) -> str:
        return f"v2:127.0.0.1:{self.mon_port}"

    def _write_config(self) -> None:
        for name in ("run", "log", "crash", "rgw", "osd.0"):
            (self.root / name).mkdir()
        self.config.write_text(
            CONFIG.format(
                fsid=self.fsid, mon_addr=self._mon_addr, rgw_port=self.port, root=self.root
            )
        )

    def _ceph(self, deadline: float, command_line: str) -> None:
        """Runs one step (``command_line`` split on spaces: the directory's path has none); the
        daemons detach themselves once started."""
        program, *arguments = command_line.split()
        command = (program, "-c", str(self.config), *arguments)
        output = self.root / "log" / f"{command[0]}.out"
        try:
            with output.open("ab") as out:
                result = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.root,
                    timeout=max(deadline - time.monotonic(), 1.0),
                )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{' '.join(command)} timed out:\n{self._logs()}") from None
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{self._logs()}")

    def _wait_ready(self, deadline: float) -> None:
        """Until ``GET /`` lists buckets and the answer is radosgw's: a radosgw that found its port
        taken exits after its launcher returned, and the probe would reach whatever holds it."""
        seen = False
        while True:
            pid = self._pid("client.rgw")
            if pid is not None:
                seen = True
            elif seen:
                raise RuntimeError(f"radosgw exited:\n{self._logs()}")
            if pid is not None and self._probe() and self._pid("client.rgw") == pid:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"radosgw did not answer in {START_TIMEOUT:.0f} s:\n{self._logs()}"
                )
            time.sleep(0.05)

    def _probe(self) -> bool:
        try:
            response = httpx.get(f"{self.endpoint}/", timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and "ListAllMyBucketsResult" in response.text

    def _pid(self, name: str) -> int | None:
        """The pid in ``name``'s pid file when that process is alive and runs with this
        directory's config (never a reused pid, nor a zombie: its cmdline is empty)."""
        try:
            pid = int((self.root / "run" / f"{name}.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._is_ours(pid) else None

    def _is_ours(self, pid: int) -> bool:
        try:
            arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return os.fsencode(self.config) in arguments

    def _terminate(self, name: str) -> bool:
        """Stops ``name`` if it runs (SIGTERM, then SIGKILL); whether it is gone."""
        pid = self._pid(name)
        if pid is None:
            return True
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + STOP_TIMEOUT
            while self._is_ours(pid):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            else:
                return True
        return False

    def _logs(self, chars: int = 2000) -> str:
        tails = []
        for log in sorted((self.root / "log").glob("*")):
            text = log.read_text(errors="replace")[-chars:]
            tails.append(f"--- {log.name}\n{text}")
        return "\n".join(tails)


def start_gateway() -> RadosGateway:
    """A started server, for a session or module fixture (which calls :meth:`RadosGateway.stop`)."""
    require_ceph()
    gateway = RadosGateway()
    gateway.start()
    return gateway
