"""The ``darkroom`` command through real subprocesses: operator commands and ``serve``."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url

from darkroom.store.database import alembic_config
from darkroom.store.tables import metadata, projects
from tests.conftest import ON_POSTGRES, Databases, current_databases
from tests.waiting import wait_until

DARKROOM = [sys.executable, "-m", "darkroom.cli.main"]


def darkroom(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``darkroom ARGS --data-dir DATA_DIR`` on the test's database for that data directory."""
    result = subprocess.run(
        [*DARKROOM, *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **current_databases().env(data_dir)},
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def as_json(data_dir: Path, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(darkroom(data_dir, *args, "--json").stdout)
    return result


def test_operator_commands(tmp_path: Path) -> None:
    created = as_json(
        tmp_path, "accounts", "create", "--name", "Ada", "--tier", "pro", "--credits", "1000"
    )
    account = created["account_id"]
    assert created["api_key"].startswith("dk_")
    second_key = as_json(tmp_path, "keys", "create", account)
    assert second_key["api_key"] != created["api_key"]
    assert as_json(tmp_path, "credits", "grant", account, "250")["balance"] == 1250
    darkroom(tmp_path, "keys", "revoke", second_key["key_id"])
    shown = as_json(tmp_path, "accounts", "show", account)
    assert shown["tier"] == "pro"
    assert shown["balance"] == 1250
    assert [e["kind"] for e in shown["ledger"]] == ["grant", "grant"]
    assert [k["revoked_at"] is not None for k in shown["keys"]] == [False, True]
    human = darkroom(tmp_path, "accounts", "show", account).stdout
    assert "balance  1250 credits" in human
    assert created["api_key"] not in human
    # the key is stored only as a hash: in no column of any row
    engine = create_engine(current_databases().url(tmp_path))
    try:
        with engine.connect() as conn:
            stored = [
                str(value)
                for table in metadata.sorted_tables
                for row in conn.execute(select(table))
                for value in row
            ]
    finally:
        engine.dispose()
    assert any(created["account_id"] in value for value in stored)
    assert not any(created["api_key"] in value for value in stored)


def test_operator_errors_exit_non_zero_with_a_reason(tmp_path: Path) -> None:
    bad_tier = darkroom(
        tmp_path, "accounts", "create", "--name", "x", "--tier", "gold", check=False
    )
    assert bad_tier.returncode == 1
    assert "tier must be one of" in bad_tier.stderr
    missing = darkroom(tmp_path, "credits", "grant", "acct_nope", "5", check=False)
    assert missing.returncode == 1
    assert "not found" in missing.stderr
    assert darkroom(tmp_path, "keys", "revoke", "key_nope", check=False).returncode == 1


def test_catalog_command_lists_prices(tmp_path: Path) -> None:
    models = as_json(tmp_path, "catalog")
    assert models["models"]["seedream-v4"]["credits_per_image"]["4k"] == 160
    assert models["models"]["z-image-turbo"]["edits"] is False
    assert models["openai"]["aliases"]["dall-e-3"]["quality"] == {"hd": "seedream-v4"}
    text = darkroom(tmp_path, "catalog").stdout
    assert "flux-schnell" in text
    assert "dall-e-2         → flux-schnell" in text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Serve:
    def __init__(
        self,
        data_dir: Path,
        *extra: str,
        env: dict[str, str] | None = None,
        ask_for_dev_account: bool = ON_POSTGRES,
    ) -> None:
        """``darkroom serve`` on ``data_dir``, once it answers. Off the embedded default (on the
        PostgreSQL pass) a server makes its development account only when asked: the tests
        that use its key ask (``ask_for_dev_account``)."""
        if ask_for_dev_account:
            extra = ("--dev-account", *extra)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [*DARKROOM, "serve", "--data-dir", str(data_dir), "--port", str(self.port), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **current_databases().env(data_dir), **(env or {})},
        )
        try:
            wait_until(lambda: self.proc.poll() is not None or self._healthy(), timeout=30)
        except AssertionError:
            self.proc.kill()
            raise
        if self.proc.poll() is not None:
            raise AssertionError(self.proc.communicate()[0])

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> str:
        self.proc.send_signal(sig)
        return self.proc.communicate(timeout=30)[0]


def wait_until_ended(url: str, headers: dict[str, str], timeout: float = 90) -> dict[str, Any]:
    """Long-poll a project until it has ended (or fail after ``timeout`` seconds)."""

    def ended() -> dict[str, Any] | None:
        project: dict[str, Any] = httpx.get(
            url, headers=headers, params={"wait": 10}, timeout=30
        ).json()
        return project if project["status"] in ("complete", "error", "canceled") else None

    return wait_until(ended, "the project to end", timeout=timeout, interval=0)


@pytest.fixture
def serves() -> Iterator[list[Serve]]:
    running: list[Serve] = []
    yield running
    for serve in running:
        if serve.proc.poll() is None:
            serve.stop(signal.SIGKILL)


def test_serve_bootstraps_a_dev_account_once(tmp_path: Path, serves: list[Serve]) -> None:
    data = tmp_path / "data"
    first = Serve(data)
    serves.append(first)
    key_file = data / "dev-api-key"
    key = key_file.read_text().strip()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    headers = {"Authorization": f"Bearer {key}"}
    body = {"image_count": 1, "style": {"prompt": "hello"}}
    created = httpx.post(f"{first.url}/v1/ai-image-generator", json=body, headers=headers)
    assert created.status_code == 200
    output = first.stop()
    assert first.url in output
    assert key in output
    assert "magic_hour" in output and "curl" in output
    assert "darkroom generate" in output and "from darkroom import Client" in output

    second = Serve(data)
    serves.append(second)
    assert second.stop().count(key) >= 1
    accounts = as_json(data, "accounts", "list")["accounts"]
    assert [a["name"] for a in accounts] == ["local-dev"]
    assert accounts[0]["tier"] == "business"


def test_settings_from_environment(tmp_path: Path, serves: list[Serve]) -> None:
    data = tmp_path / "data"
    # darkroom's own links (a bucket's would be presigned URLs of the bucket)
    env = {"DARKROOM_PUBLIC_URL": "https://cdn.example.org", "DARKROOM_STORAGE_LINKS": "proxy"}
    serve = Serve(data, env=env)
    serves.append(serve)
    key = (data / "dev-api-key").read_text().strip()
    headers = {"Authorization": f"Bearer {key}"}
    project_id = httpx.post(
        f"{serve.url}/v1/ai-image-generator",
        json={"image_count": 1, "resolution": "640px", "style": {"prompt": "env"}},
        headers=headers,
    ).json()["id"]
    project = wait_until_ended(f"{serve.url}/v1/image-projects/{project_id}", headers)
    assert project["downloads"][0]["url"].startswith("https://cdn.example.org/downloads/")


def test_kill_9_mid_render_then_restart_finishes_the_job(
    tmp_path: Path, serves: list[Serve]
) -> None:
    data = tmp_path / "data"
    serve = Serve(data, "--workers", "1")
    serves.append(serve)
    key = (data / "dev-api-key").read_text().strip()
    headers = {"Authorization": f"Bearer {key}"}
    body = {
        "image_count": 4,
        "model": "nano-banana-2",
        "resolution": "4k",
        "style": {"prompt": "big"},
    }
    created = httpx.post(f"{serve.url}/v1/ai-image-generator", json=body, headers=headers).json()
    url = f"{serve.url}/v1/image-projects/{created['id']}"
    started = httpx.get(url, headers=headers, params={"wait": 30, "since": "queued"}, timeout=60)
    assert started.json()["status"] == "rendering"
    serve.stop(signal.SIGKILL)
    before = as_json(data, "accounts", "list")["accounts"][0]["balance"]

    again = Serve(data, "--workers", "1")
    serves.append(again)
    url = f"{again.url}/v1/image-projects/{created['id']}"
    project = wait_until_ended(url, headers)
    assert project["status"] == "complete"
    assert len(project["downloads"]) == 4
    engine = create_engine(current_databases().url(data))
    try:
        with engine.connect() as conn:
            query = select(projects.c.attempts).where(projects.c.id == created["id"])
            attempts = conn.execute(query).scalar_one()
    finally:
        engine.dispose()
    assert attempts == 2  # cut off once by the kill, finished by the restart
    assert as_json(data, "accounts", "list")["accounts"][0]["balance"] == before
    assert before == 1_000_000 - created["credits_charged"]


def test_catalog_shows_weights_when_models_run_on_their_backends(tmp_path: Path) -> None:
    preview = as_json(tmp_path, "catalog")
    assert preview["models"]["flux-schnell"]["backend"] == "preview"
    assert "weights" not in preview["models"]["flux-schnell"]
    real = as_json(tmp_path, "catalog", "--no-preview-only")
    flux = real["models"]["flux-schnell"]
    assert flux["backend"] == "diffusers"
    assert flux["weights"]["source"] == "black-forest-labs/FLUX.1-schnell"
    assert flux["weights"]["steps"] == 4
    assert flux["weights"]["loadable"] is False  # no hub, no cache on this machine
    seedream = real["models"]["seedream-v4"]  # a hosted model: its vendor's API
    assert seedream["backend"] == "seedream"
    assert seedream["upstream"]["api_key_env"] == "ARK_API_KEY"
    assert seedream["upstream"]["key_set"] is False
    assert flux["edits"] is False  # the diffusers backend only generates


def test_serve_refuses_a_malformed_weights_flag(tmp_path: Path) -> None:
    bad = darkroom(tmp_path, "serve", "--weights", "flux-schnell", check=False)
    assert bad.returncode == 2
    assert "MODEL=DIR_OR_HUB_ID" in bad.stderr
    unknown = darkroom(tmp_path, "serve", "--weights", "seedream-v4=/x", check=False)
    assert unknown.returncode == 2
    assert "no weights table" in unknown.stderr


def test_serve_on_a_shared_database_without_the_shared_secrets_says_so(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DARKROOM_")}
    env["DARKROOM_DATABASE_URL"] = "postgresql+psycopg://darkroom@127.0.0.1:1/darkroom"
    env["DARKROOM_SECRET_KEY"] = "shared"
    result = subprocess.run(
        [*DARKROOM, "serve", "--data-dir", str(tmp_path), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("darkroom: a shared database needs DARKROOM_SECRET_KEY and ")
    assert lines[0].endswith("not set: DARKROOM_ADMIN_TOKEN")


def test_migrate_brings_an_empty_database_to_the_newest_schema_and_exits(
    tmp_path: Path, databases: Databases
) -> None:
    # What a rollout runs first (the Helm chart's hook, compose's migrate service): on the
    # database alone, without the nodes' secrets.
    data = tmp_path / "data"
    url = databases.empty(data)
    newest = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DARKROOM_")}
    for _ in range(2):  # once to migrate, once to find nothing to do
        result = subprocess.run(
            [*DARKROOM, "migrate", "--database-url", url, "--data-dir", str(data), "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        assert answer["revision"] == newest
        assert answer["database"] == make_url(url).render_as_string(hide_password=True)
    with create_engine(url).connect() as conn:
        assert conn.execute(select(projects.c.id)).all() == []


def test_migrate_gives_up_on_a_database_that_never_answers_with_one_line(tmp_path: Path) -> None:
    # A hook Job that fails, so that the rollout stops: exit 1 and the reason, no password
    env = {k: v for k, v in os.environ.items() if not k.startswith("DARKROOM_")}
    env["DARKROOM_DATABASE_START_SECONDS"] = "0.5"
    url = "postgresql+psycopg://darkroom:hunter2@127.0.0.1:1/darkroom"
    result = subprocess.run(
        [*DARKROOM, "migrate", "--database-url", url, "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "darkroom: the database at postgresql+psycopg://darkroom:***@127.0.0.1:1"
    )
    assert "hunter2" not in result.stderr + result.stdout
