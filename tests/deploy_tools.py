"""The tools of the deploy tests (tests/test_deploy_*.py): podman, Docker Compose (through
podman's Docker API), helm, hadolint and kubernetes-validate, where
``scripts/ensure-deploy-tools`` installs them (``.ci/run`` runs it; /work/shared/deploy-notes.md
says why each is what it is).

A tool that is missing skips the tests that need it, saying which and how to get it; with
``DARKROOM_TEST_DEPLOY=require`` (``.ci/run`` sets it) a missing tool fails them instead, so
that CI cannot pass by skipping them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "darkroom"
ENSURE = "scripts/ensure-deploy-tools"
# The official image's name: the Dockerfile's default BASE, made here by ENSURE.
BASE_IMAGE = "docker.io/library/python:3.11-slim-bookworm"
# A stand-in under the official image's name (tests/deploy/postgres/Dockerfile says why).
POSTGRES_IMAGE = "docker.io/library/postgres:15-bookworm"
# One image per worktree, so that two checkouts testing at once do not swap images.
IMAGE = "localhost/darkroom-test-" + hashlib.sha256(str(ROOT).encode()).hexdigest()[:8] + ":cpu"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BIN = Path(sys.executable).parent
WHEELHOUSES = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "darkroom-wheels"


def missing(tool: str) -> None:
    """Skip (or, where CI requires the deploy tests, fail) for want of ``tool``."""
    reason = f"{tool} is not here: {ENSURE} installs it (.ci/run runs it)"
    if os.environ.get("DARKROOM_TEST_DEPLOY") == "require":
        pytest.fail(reason)
    pytest.skip(reason)


def tool(name: str) -> str:
    """The path of a command-line tool: the virtual environment's (where ENSURE puts the Python
    ones and helm), else the system's."""
    beside = BIN / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        missing(name)
    assert found is not None
    return found


def run(args: Sequence[str], *, timeout: float = 120, check: bool = True, **kwargs: object) -> str:
    """Run a command; its stdout, or a failure showing both outputs."""
    result = subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, env=podman_env(), **kwargs
    )
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result.stdout


def podman_env() -> dict[str, str]:
    """podman on these VMs: runc and capped file limits (scripts/containers.conf), unless the
    caller chose a containers.conf of their own."""
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(ROOT / "scripts" / "containers.conf"))
    return env


def podman(*args: str, timeout: float = 120, check: bool = True) -> str:
    return run([tool("podman"), *args], timeout=timeout, check=check)


def image_exists(name: str) -> bool:
    result = subprocess.run(
        [tool("podman"), "image", "exists", name], env=podman_env(), capture_output=True
    )
    return result.returncode == 0


def build(context: Path, tag: str, *extra: str, timeout: float = 900) -> None:
    """``podman build`` as a user's ``docker build`` (Docker's format keeps the HEALTHCHECK),
    on the base image made here (never pulled), with this machine's CA bundle."""
    if not image_exists(BASE_IMAGE):
        missing(f"the base image {BASE_IMAGE}")
    mounts = ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"] if CA_BUNDLE.exists() else []
    options = ["--pull=never", "--format", "docker", *mounts, "-t", tag, *extra]
    podman("build", *options, str(context), timeout=timeout)


def build_darkroom(tag: str, variant: str = "cpu") -> None:
    """The image of this checkout, installed from a wheelhouse (what pip would download in the
    build, kept between runs: pip's cache cannot keep it here, where a proxy strips the
    answers' caching headers), so that a change to pyproject.toml costs seconds of installing,
    not a minute of downloading. An unchanged pyproject.toml reuses podman's layer."""
    wheels = wheelhouse(variant)
    before = image_id(tag)
    build(
        ROOT,
        tag,
        "--build-arg",
        f"VARIANT={variant}",
        "--build-arg",
        "WHEELS=/wheels",
        "-v",
        f"{wheels}:/wheels:ro",
    )
    if before is not None and before != image_id(tag):
        # The build before this one (each run's final layer is new): not kept for ever
        podman("rmi", before, check=False)


def image_id(name: str) -> str | None:
    if not image_exists(name):
        return None
    return podman("image", "inspect", "--format", "{{.Id}}", name).strip()


def wheelhouse(variant: str) -> Path:
    """The wheels of the image's requirements (``requirements.py --image VARIANT --build``),
    downloaded once for each set of requirements into the user's cache."""
    listed = subprocess.run(
        [sys.executable, "deploy/image/requirements.py", "--image", variant, "--build"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.splitlines()
    key = hashlib.sha256("\n".join(sorted(listed)).encode()).hexdigest()[:16]
    directory = WHEELHOUSES / f"{variant}-{key}"
    if (directory / ".complete").exists():
        return directory
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    # For the image's Python (the base image's: 3.11), whatever Python runs the tests
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--dest",
            str(partial),
            "--python-version",
            "3.11",
            "--only-binary",
            ":all:",
            *listed,
        ],
        timeout=600,
    )
    (partial / ".complete").touch()
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)
    for older in WHEELHOUSES.glob(f"{variant}-*"):  # those of requirements gone by
        if older != directory:
            shutil.rmtree(older, ignore_errors=True)
    return directory


@contextmanager
def docker_api(socket: Path, project: str) -> Iterator[dict[str, str]]:
    """podman's Docker-compatible API on ``socket`` for Docker Compose, with the health checks
    of the compose ``project``'s containers run every second (podman schedules them with systemd
    timers, and these VMs have no systemd); the environment that points Docker clients at it."""
    service = subprocess.Popen(
        [tool("podman"), "system", "service", "--time=0", f"unix://{socket}"],
        env=podman_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stop = threading.Event()

    def check_health() -> None:
        label = f"label=com.docker.compose.project={project}"
        while not stop.wait(1):
            running = podman("ps", "--filter", label, "--format", "{{.Names}}", check=False)
            for name in running.split():
                podman("healthcheck", "run", name, check=False, timeout=30)

    checker = threading.Thread(target=check_health, daemon=True)
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            assert service.poll() is None, "podman system service exited"
            assert time.monotonic() < deadline, "podman's API socket did not appear"
            time.sleep(0.05)
        checker.start()
        yield {**podman_env(), "DOCKER_HOST": f"unix://{socket}"}
    finally:
        stop.set()
        if checker.is_alive():
            checker.join(timeout=60)
        service.terminate()
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [tool("helm"), *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    if check and result.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result
