"""The container image and the compose stack, built and run here with podman (README, "Running
it for others"): the image serves, as a non-root user behind an init, with its health check and
no build tools; its commands run by argument; deploy/compose.yaml renders an image end to end
through its API node and loses nothing when its worker is killed."""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from magic_hour import Client

from tests.conftest import ON_POSTGRES
from tests.deploy_tools import (
    IMAGE,
    POSTGRES_IMAGE,
    ROOT,
    build,
    build_darkroom,
    docker_api,
    podman,
    podman_env,
    tool,
)
from tests.waiting import wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        ON_POSTGRES, reason="about the images, not the run's database: run on the SQLite pass"
    ),
]

CREATE = "/v1/ai-image-generator"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout: float = 120) -> httpx.Response:
    """GET ``url`` until it answers 200."""

    def answered() -> httpx.Response | None:
        try:
            answer = httpx.get(url, timeout=5)
        except httpx.TransportError:
            return None
        return answer if answer.status_code == 200 else None

    return wait_until(answered, f"{url} to answer 200", timeout=timeout, interval=0.2)


def _project(base: str, key: str, project_id: str, **params: Any) -> dict[str, Any]:
    """The project, by a long poll of up to 10 s."""
    project: dict[str, Any] = httpx.get(
        f"{base}/v1/image-projects/{project_id}",
        params={"wait": 10, **params},
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    ).json()
    return project


def wait_until_ended(base: str, key: str, project_id: str, timeout: float = 120) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        project = _project(base, key, project_id)
        return project if project["status"] in ("complete", "error", "canceled") else None

    return wait_until(ended, f"{project_id} to end", timeout=timeout, interval=0)


def wait_until_claimed(base: str, key: str, project_id: str) -> None:
    """Until a worker has taken the project (its long poll answers as soon as it is no longer
    queued: rendering, or on a fast machine already complete)."""
    project = wait_until(
        lambda: (
            (found := _project(base, key, project_id, since="queued"))["status"] != "queued"
            and found
        ),
        f"{project_id} to be taken",
        timeout=60,
        interval=0,
    )
    assert project["status"] in ("rendering", "complete"), project


def downloaded(project: dict[str, Any]) -> list[bytes]:
    """Each of a complete project's images, fetched from its link and checked against its
    recorded digest."""
    assert project["status"] == "complete", project
    files = []
    for item in project["downloads"]:
        body = httpx.get(item["url"], timeout=30, follow_redirects=True)
        assert body.status_code == 200
        assert body.content.startswith(b"\x89PNG")
        assert hashlib.sha256(body.content).hexdigest() == item["sha256"]
        files.append(body.content)
    return files


@pytest.fixture(scope="module")
def image() -> str:
    """The cpu image of this checkout (layers cached: a rebuild after a change to src/ redoes
    the last layer only)."""
    build_darkroom(IMAGE)
    return IMAGE


@pytest.fixture
def container(image: str) -> Iterator[str]:
    """A name for a container of the test, removed (with its volumes) at the end."""
    name = f"darkroom-test-{secrets.token_hex(4)}"
    yield name
    podman("rm", "--force", "--volumes", name, check=False)


def test_the_dockerfiles_pass_hadolint() -> None:
    result = subprocess.run(
        [tool("hadolint"), "Dockerfile", "tests/deploy/postgres/Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_runs_darkroom_as_a_user_behind_an_init_without_build_tools(image: str) -> None:
    inspected = json.loads(podman("image", "inspect", image))[0]
    config = inspected["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["dumb-init", "--", "darkroom"]
    assert config["Cmd"] == ["serve"]
    assert "/data" in config["Volumes"]
    # podman shows the HEALTHCHECK beside the configuration (Docker inside it)
    healthcheck = config.get("Healthcheck") or inspected["Healthcheck"]
    assert healthcheck["Test"] == ["CMD", "darkroom-healthcheck"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert (env["DARKROOM_HOST"], env["DARKROOM_DATA_DIR"]) == ("0.0.0.0", "/data")
    # No compiler, no pip: what the build stage needed stayed there.
    script = (
        "id -u; for t in pip pip3 gcc cc make git; do command -v $t; done;"
        " python3 -m pip --version 2>/dev/null; darkroom --version"
    )
    probe = podman("run", "--rm", "--entrypoint", "/bin/sh", image, "-c", script)
    assert probe.split() == ["10001", "darkroom", "0.1.0"]


def test_the_image_serves_renders_and_stops_on_sigterm(image: str, container: str) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    publish, public = f"127.0.0.1:{port}:8000", f"DARKROOM_PUBLIC_URL={base}"
    podman("run", "--detach", "--name", container, "-p", publish, "-e", public, image)
    ready = wait_for(f"{base}/readyz").json()
    assert ready["ready"] is True
    assert podman("healthcheck", "run", container, check=False, timeout=30) == ""
    state = json.loads(podman("inspect", container))[0]["State"]
    assert state["Health"]["Status"] == "healthy"
    assert podman("exec", container, "cat", "/proc/1/cmdline").split("\0")[:2] == [
        "dumb-init",
        "--",
    ]
    # An operator command in the running container, on its data directory (the volume)
    create = "darkroom accounts create --name Ada --tier pro --credits 100 --json"
    created = json.loads(podman("exec", container, *create.split()))
    key = created["api_key"]
    answer = httpx.post(
        f"{base}{CREATE}",
        headers={"authorization": f"Bearer {key}"},
        json={"image_count": 1, "style": {"prompt": "a lighthouse at dusk"}},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    project = wait_until_ended(base, key, answer.json()["id"])
    assert len(downloaded(project)) == 1

    podman("stop", "--time", "30", container, timeout=60)
    state = json.loads(podman("inspect", container))[0]["State"]
    logs = subprocess.run(
        [tool("podman"), "logs", container],
        env=podman_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
    ).stdout
    assert "Application shutdown complete" in logs, logs[-2000:]
    # uvicorn ends by re-raising the SIGTERM it handled: 128 + 15 through dumb-init
    assert state["ExitCode"] in (0, 143), state


def test_the_image_runs_the_other_commands_by_argument(image: str) -> None:
    migrated = podman("run", "--rm", image, "migrate", "--json")
    assert json.loads(migrated.splitlines()[-1])["revision"]
    assert "flux-schnell" in podman("run", "--rm", image, "catalog")
    assert "--concurrency" in podman("run", "--rm", image, "worker", "--help")


# -- compose ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_image() -> str:
    build(ROOT / "tests" / "deploy" / "postgres", POSTGRES_IMAGE)
    return POSTGRES_IMAGE


class Compose:
    """``docker compose`` on a copy of deploy/ (what a user runs, as the README says)."""

    def __init__(self, directory: Path, project: str, env: dict[str, str]) -> None:
        self.directory = directory
        self.project = project
        self.env = env
        self.binary = tool("docker-compose")

    def __call__(self, *args: str, check: bool = True, timeout: float = 240) -> str:
        result = subprocess.run(
            [self.binary, "-p", self.project, "-f", "compose.yaml", *args],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check:
            assert result.returncode == 0, (
                f"compose {' '.join(args)}:\n{result.stdout}{result.stderr}\n{self.logs()}"
            )
        return result.stdout

    def logs(self) -> str:
        return subprocess.run(
            [self.binary, "-p", self.project, "-f", "compose.yaml", "logs", "--tail", "30"],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout

    def left_behind(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.project}"
        containers = podman("ps", "--all", "--filter", label, "--format", "{{.Names}}")
        volumes = podman("volume", "ls", "--filter", label, "--format", "{{.Name}}")
        return containers.split() + volumes.split()


def deploy_copy(tmp_path: Path) -> Path:
    """deploy/'s compose files and make-secrets, where the test may write its secrets."""
    directory = tmp_path / "deploy"
    directory.mkdir()
    for name in ("compose.yaml", "compose.s3.yaml", "make-secrets"):
        shutil.copy2(ROOT / "deploy" / name, directory / name)
    subprocess.run(["sh", "make-secrets"], cwd=directory, check=True, timeout=30)
    return directory


@pytest.fixture
def compose(image: str, postgres_image: str, tmp_path: Path) -> Iterator[Compose]:
    directory = deploy_copy(tmp_path)
    project = f"drtest{secrets.token_hex(3)}"
    port = free_port()
    with docker_api(tmp_path / "podman.sock", project) as api:
        env = api | {
            "DARKROOM_IMAGE": image,
            "DARKROOM_PUBLISH": f"127.0.0.1:{port}",
            "DARKROOM_PUBLIC_URL": f"http://127.0.0.1:{port}",
        }
        stack = Compose(directory, project, env)
        try:
            yield stack
        finally:
            stack("down", "--volumes", "--timeout", "10", check=False, timeout=120)


def test_compose_renders_end_to_end_and_survives_a_worker_kill(compose: Compose) -> None:
    compose("up", "-d", "--wait", "--wait-timeout", "180")
    base = compose.env["DARKROOM_PUBLIC_URL"]
    ready = wait_for(f"{base}/readyz").json()
    assert (ready["node"]["kind"], ready["notifications"]) == ("api", "listen")

    # An account through the admin API, with the operator token compose mounted from its file
    token = (compose.directory / "secrets" / "admin_token").read_text().strip()
    created = httpx.post(
        f"{base}/admin/v1/accounts",
        headers={"authorization": f"Bearer {token}"},
        json={"name": "Ada", "tier": "pro", "credits": 1000},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    key = created.json()["api_key"]

    # Rendered by the worker container, stored on the shared volume, downloaded through the API
    # node, by the published SDK
    out = compose.directory / "out"
    out.mkdir()
    client = Client(token=key, base_url=base)
    result = client.v1.ai_image_generator.generate(
        image_count=1,
        aspect_ratio="16:9",
        style={"prompt": "a lighthouse at dusk"},
        download_directory=str(out),
    )
    assert result.status == "complete"
    assert [Path(p).read_bytes()[:8] for p in result.downloaded_paths] == [b"\x89PNG\r\n\x1a\n"]

    # Projects created and the worker killed (kill -9) once it renders the first; more created
    # while it is down; then it starts again: every project completes once, charged once (the
    # jobs it held go back to the queue when their lease passes).
    headers = {"authorization": f"Bearer {key}"}
    body = {"image_count": 4, "resolution": "2k", "style": {"prompt": "a harbour"}}
    ids = [
        httpx.post(f"{base}{CREATE}", headers=headers, json=body, timeout=30).json()["id"]
        for _ in range(3)
    ]
    wait_until_claimed(base, key, ids[0])
    compose("kill", "-s", "SIGKILL", "worker")
    ids += [
        httpx.post(f"{base}{CREATE}", headers=headers, json=body, timeout=30).json()["id"]
        for _ in range(2)
    ]
    compose("start", "worker")
    projects = [wait_until_ended(base, key, project_id, timeout=180) for project_id in ids]
    assert [len(downloaded(project)) for project in projects] == [4] * len(ids)
    charged = sum(p["credits_charged"] for p in projects) + result.credits_charged
    account = httpx.get(f"{base}/v1/account", headers=headers, timeout=30).json()
    assert account["credits"] == 1000 - charged

    compose("down", "-v")
    assert compose.left_behind() == []


def test_compose_s3_option_keeps_the_images_in_a_bucket(tmp_path: Path) -> None:
    directory = deploy_copy(tmp_path)
    (directory / "secrets" / "aws_credentials").write_text("[default]\n")
    env = podman_env() | {"DARKROOM_S3_URL": "s3://images/prod", "AWS_ENDPOINT_URL": "http://s3"}
    stack = Compose(directory, "drconfig", env)
    config = json.loads(stack("-f", "compose.s3.yaml", "config", "--format", "json"))
    for name in ("api", "worker"):
        service = config["services"][name]
        assert service["environment"]["DARKROOM_STORAGE_URL"] == "s3://images/prod"
        assert service["environment"]["AWS_SHARED_CREDENTIALS_FILE"] == (
            "/run/secrets/aws_credentials"
        )
        assert "aws_credentials" in {secret["source"] for secret in service["secrets"]}
