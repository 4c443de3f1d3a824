"""A node's start-up the way containers start it: before its database (it waits, within a bound,
then comes up, or says in one line which database did not answer, without its password), on
storage that the other nodes cannot see (it refuses), with its secrets in mounted files, and
without handing out a development account where others can reach it."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cluster import free_port
from tests.conftest import ON_POSTGRES, ServerFactory
from tests.postgres import PostgresServer
from tests.test_cli import DARKROOM, Serve, as_json
from tests.waiting import wait_until

PASSWORD = "hunter2-not-to-be-logged"
# Nothing listens on port 1: a PostgreSQL that is not there.
NOWHERE = f"postgresql+psycopg://darkroom:{PASSWORD}@127.0.0.1:1/darkroom"
CLUSTER = {"DARKROOM_SECRET_KEY": "shared-secret", "DARKROOM_ADMIN_TOKEN": "shared-token"}
postgres_only = pytest.mark.skipif(not ON_POSTGRES, reason="a PostgreSQL of its own")


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without any DARKROOM_ setting, with ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DARKROOM_")}
    return env | settings


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DARKROOM, *args], capture_output=True, text=True, timeout=120, env=env)


# -- a database that is not up yet -------------------------------------------------------------


@pytest.fixture
def stopped_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own, stopped."""
    server = PostgresServer()
    try:
        server.start()
        server.halt()
        yield server
    finally:
        server.stop()


class Output:
    """A process's output, collected as it comes."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)


@postgres_only
def test_a_node_started_before_its_database_comes_up_once_it_is_there(
    stopped_postgres: PostgresServer, tmp_path: Path
) -> None:
    port = free_port()
    stopped_postgres.resume()
    empty = stopped_postgres.create_database(migrated=False)  # a fresh cluster's database
    stopped_postgres.halt()
    url = empty.replace("@", f":{PASSWORD}@")  # trust authentication: not checked
    env = clean_env(
        DARKROOM_DATABASE_URL=url,
        DARKROOM_STORAGE_URL=str(tmp_path / "files"),
        DARKROOM_LOG_LEVEL="info",
        **CLUSTER,
    )
    args = ["serve", "--workers", "0", "--port", str(port), "--data-dir", str(tmp_path / "api")]
    node = subprocess.Popen(
        [*DARKROOM, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    output = Output(node)
    try:
        wait_until(
            lambda: "waiting for the database" in output.text, "the node to wait", timeout=30
        )
        assert node.poll() is None, output.text
        stopped_postgres.resume()

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, "the node to serve once its database is up", timeout=60)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/admin/v1", timeout=10) as admin:
            made = admin.post(
                "/accounts",
                json={"name": "after", "tier": "free", "credits": 1},
                headers={"Authorization": "Bearer shared-token"},
            )
        assert made.status_code == 201, made.text  # migrated, and serving
    finally:
        node.terminate()
        node.wait(30)
        output.thread.join(10)
    waiting = [line for line in output.lines if "waiting for the database" in line]
    assert waiting and "postgres:***@127.0.0.1" in waiting[0], output.text
    assert PASSWORD not in output.text


def test_a_node_whose_database_never_answers_stops_with_one_line(tmp_path: Path) -> None:
    env = clean_env(
        DARKROOM_DATABASE_URL=NOWHERE,
        DARKROOM_DATABASE_START_SECONDS="1",
        DARKROOM_STORAGE_URL=str(tmp_path / "files"),
        **CLUSTER,
    )
    started = time.monotonic()
    result = run("worker", "--data-dir", str(tmp_path / "worker"), env=env)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(
        "darkroom: the database at postgresql+psycopg://darkroom:***@127.0.0.1:1/darkroom did "
        "not answer within 1 s (DARKROOM_DATABASE_START_SECONDS)"
    ), result.stderr
    assert all("waiting for the database" in line for line in lines[:-1]), result.stderr
    assert "Traceback" not in result.stderr and PASSWORD not in result.stderr + result.stdout
    assert time.monotonic() - started < 60  # the bound, not the default minute


# -- storage that the other nodes cannot see ---------------------------------------------------


def test_a_node_on_a_shared_database_with_files_only_it_sees_refuses_to_start(
    tmp_path: Path,
) -> None:
    env = clean_env(DARKROOM_DATABASE_URL=NOWHERE, DARKROOM_DATABASE_START_SECONDS="0", **CLUSTER)
    refused = run("worker", "--data-dir", str(tmp_path / "worker"), env=env)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "darkroom: a shared database needs storage that every node sees: set "
        "DARKROOM_STORAGE_URL to a bucket (s3://bucket/prefix) or to a directory every node "
        "mounts (DARKROOM_STORAGE_SHARED=true if the data directory is itself shared)"
    ]
    assert not (tmp_path / "worker").exists()  # refused before anything was made
    # Said to be shared (or a directory given in DARKROOM_STORAGE_URL): it goes on to the
    # database, which is the next thing missing here.
    files = str(tmp_path / "mounted-files")
    for shared in ({"DARKROOM_STORAGE_SHARED": "true"}, {"DARKROOM_STORAGE_URL": files}):
        going_on = run("worker", "--data-dir", str(tmp_path / "worker"), env=env | shared)
        assert going_on.returncode == 1
        assert "darkroom: the database at" in going_on.stderr, going_on.stderr


# -- secrets in files --------------------------------------------------------------------------


def test_the_secrets_can_come_from_mounted_files(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    secrets = tmp_path / "run-secrets"
    secrets.mkdir()
    (secrets / "secret-key").write_text("a-secret-from-a-file\n")
    (secrets / "admin-token").write_text("a-token-from-a-file\n")
    server = server_factory(
        secret_key="",
        secret_key_file=secrets / "secret-key",
        admin_token="",
        admin_token_file=secrets / "admin-token",
    )
    assert server.settings.secret_key == "a-secret-from-a-file"  # without the newline
    headers = {"Authorization": "Bearer a-token-from-a-file"}
    with server.client() as client:
        assert client.get("/admin/v1/accounts", headers=headers).status_code == 200
    # Nothing made up in the data directory: the files are the secrets.
    data = server.settings.data_dir
    assert not (data / "secret.key").exists() and not (data / "admin-token").exists()

    missing, empty = secrets / "missing", secrets / "empty"
    empty.write_text("\n")
    for name, path, why in (
        ("DARKROOM_SECRET_KEY_FILE", missing, f"cannot read {missing} (No such file or directory)"),
        ("DARKROOM_ADMIN_TOKEN_FILE", empty, f"{empty} is empty"),
    ):
        result = run(
            "serve", "--data-dir", str(tmp_path / "refused"), env=clean_env(**{name: str(path)})
        )
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [f"darkroom: {name}: {why}"], result.stderr
    both = clean_env(
        DARKROOM_SECRET_KEY="plain", DARKROOM_SECRET_KEY_FILE=str(secrets / "secret-key")
    )
    result = run("serve", "--data-dir", str(tmp_path / "refused"), env=both)
    assert result.stderr.strip().splitlines() == [
        "darkroom: DARKROOM_SECRET_KEY and DARKROOM_SECRET_KEY_FILE are both set: give one of them"
    ]


# -- the development account -------------------------------------------------------------------


def output_of(data_dir: Path, *args: str, ask_for_dev_account: bool) -> str:
    """What ``darkroom serve ARGS`` prints from its start to its stop."""
    serve = Serve(data_dir, *args, ask_for_dev_account=ask_for_dev_account)
    try:
        return serve.stop()
    finally:
        if serve.proc.poll() is None:
            serve.proc.kill()
            serve.proc.wait(10)


def test_no_development_account_where_others_can_reach_it(tmp_path: Path) -> None:
    # Listening on every interface (or, on the PostgreSQL pass, on a shared database): no
    # account with a million credits for whoever reaches the port, and no key in the output.
    output = output_of(tmp_path / "exposed", "--host", "0.0.0.0", ask_for_dev_account=False)
    assert "dk_" not in output and "<your key: darkroom accounts create" in output
    assert as_json(tmp_path / "exposed", "accounts", "list")["accounts"] == []
    assert not (tmp_path / "exposed" / "dev-api-key").exists()

    # Asked for (--dev-account) on such a server: made, kept in the data directory for its
    # operator, and still not printed into its logs.
    output = output_of(tmp_path / "asked", "--host", "0.0.0.0", ask_for_dev_account=True)
    key = (tmp_path / "asked" / "dev-api-key").read_text().strip()
    assert key.startswith("dk_") and key not in output
    assert "not printed: this server listens beyond loopback" in output
    accounts = as_json(tmp_path / "asked", "accounts", "list")["accounts"]
    assert [a["name"] for a in accounts] == ["local-dev"]


@postgres_only
def test_serve_on_a_shared_database_makes_no_development_account(tmp_path: Path) -> None:
    data = tmp_path / "data"
    output = output_of(data, ask_for_dev_account=False)  # on loopback, as make serve
    assert "dk_" not in output
    assert as_json(data, "accounts", "list")["accounts"] == []
