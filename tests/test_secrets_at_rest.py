"""Secrets at rest: the data directory is its owner's only (a fresh one, and one an older version
left readable by others), webhook signing secrets are stored encrypted (yet deliveries verify
with the secret shown at creation), plaintext rows of an older version are encrypted at start
on the embedded default and by ``darkroom secrets seal`` on a cluster (whose older nodes sign
with them until then), and the server's secret can be rotated, or be wrong, without losing a
delivery."""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import create_engine, select, text, update

from darkroom import verify_webhook
from darkroom.cli.main import main
from darkroom.core.webhook_secrets import new_secret, seal
from darkroom.sdk.webhooks import signature
from darkroom.store.database import alembic_config
from darkroom.store.tables import webhook_endpoints
from tests.conftest import (
    ON_POSTGRES,
    Account,
    Databases,
    LiveServer,
    ServerFactory,
    current_databases,
)
from tests.test_cli import Serve, wait_until_ended
from tests.waiting import wait_until
from tests.webhook_receiver import Received, Receiver

BODY = {"image_count": 1, "style": {"prompt": "a lighthouse"}}
FAST = {"webhook_retry_seconds": 0.1, "webhook_retry_max_seconds": 0.4}


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.close()


def new_receiver(receivers: list[Receiver]) -> Receiver:
    receiver = Receiver()
    receivers.append(receiver)
    return receiver


def register(server: LiveServer, account: Account, receiver: Receiver) -> str:
    with server.client(account) as client:
        response = client.post("/v1/webhooks", json={"url": receiver.url})
    assert response.status_code == 201, response.text
    receiver.secret = response.json()["secret"]
    webhook_id: str = response.json()["id"]
    return webhook_id


def render(server: LiveServer, account: Account) -> dict[str, Any]:
    with server.client(account) as client:
        response = client.post("/v1/ai-image-generator", json=BODY)
    assert response.status_code == 200, response.text
    project = server.wait(account, response.json()["id"])
    assert project["status"] == "complete", project
    return project


def completed(receiver: Receiver, project_id: str, timeout: float = 30) -> Received:
    """The accepted image.completed delivery about ``project_id``, once it came."""

    def found() -> list[Received]:
        accepted = receiver.accepted("image.completed")
        return [r for r in accepted if r.event["payload"]["id"] == project_id]

    delivery: Received = wait_until(found, f"image.completed about {project_id}", timeout=timeout)[
        0
    ]
    return delivery


def verified(receiver: Receiver, delivery: Received) -> dict[str, Any]:
    """The delivery checked with the SDK's verify_webhook and the secret shown at creation."""
    headers = {
        "webhook-id": delivery.webhook_id,
        "magic-hour-event-timestamp": str(delivery.timestamp),
        "magic-hour-event-signature": delivery.signature,
    }
    return verify_webhook(receiver.secret, delivery.body, headers)


def stored_secret(server: LiveServer, webhook_id: str) -> str:
    """The endpoint's secret column as the database holds it, read with SQLAlchemy directly."""
    engine = create_engine(server.settings.sqlalchemy_url)
    try:
        with engine.connect() as conn:
            query = select(webhook_endpoints.c.secret).where(webhook_endpoints.c.id == webhook_id)
            value: str = conn.execute(query).scalar_one()
    finally:
        engine.dispose()
    return value


def store_secret(server: LiveServer, webhook_id: str, value: str) -> None:
    """Write the secret column as an older version would have (in clear)."""
    engine = create_engine(server.settings.sqlalchemy_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                update(webhook_endpoints)
                .where(webhook_endpoints.c.id == webhook_id)
                .values(secret=value)
            )
    finally:
        engine.dispose()


def loose_entries(root: Path) -> list[str]:
    """Everything under ``root`` (itself included) that is not owner-only: directories must be
    0700, files 0600."""
    found = []
    entries = [(root, True)]
    for dirpath, dirnames, filenames in os.walk(root):
        entries += [(Path(dirpath, d), True) for d in dirnames]
        entries += [(Path(dirpath, f), False) for f in filenames]
    for path, is_dir in entries:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode != (0o700 if is_dir else 0o600):
            found.append(f"{path.relative_to(root.parent)} {mode:o}")
    return found


def all_files(root: Path) -> set[str]:
    return {
        Path(dirpath, name).relative_to(root).as_posix()
        for dirpath, _dirs, names in os.walk(root)
        for name in names
    }


@pytest.fixture
def library_umask() -> Iterator[None]:
    """The usual umask (022) of a program that uses darkroom as a library: files are owner-only
    because darkroom sets their modes, not because of the umask."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def secrets_command(
    action: str,
    data_dir: Path,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, dict[str, Any]]:
    """``darkroom secrets ACTION --json`` on ``data_dir``'s database (run in this process: the
    command line is the same), with ``env`` over the test's settings: its exit status and
    answer."""
    with monkeypatch.context() as patched:
        for name, value in {**current_databases().env(data_dir), **env}.items():
            patched.setenv(name, value)
        capsys.readouterr()
        status = main(["secrets", action, "--data-dir", str(data_dir), "--json"])
    out = capsys.readouterr().out
    answer: dict[str, Any] = json.loads(out)
    return status, answer


def rotate(
    data_dir: Path,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, dict[str, Any]]:
    return secrets_command("rotate", data_dir, env, monkeypatch, capsys)


# -- the data directory ------------------------------------------------------------------------


def test_darkroom_serve_keeps_its_data_directory_to_its_owner(tmp_path: Path) -> None:
    data = tmp_path / "data"
    serve = Serve(data)
    try:
        key = (data / "dev-api-key").read_text().strip()
        headers = {"Authorization": f"Bearer {key}"}
        created = httpx.post(f"{serve.url}/v1/ai-image-generator", json=BODY, headers=headers)
        assert created.status_code == 200, created.text
        project = wait_until_ended(f"{serve.url}/v1/image-projects/{created.json()['id']}", headers)
        assert project["status"] == "complete"
        hook = httpx.post(
            f"{serve.url}/v1/webhooks", json={"url": "http://127.0.0.1:9/h"}, headers=headers
        )
        assert hook.status_code == 201, hook.text
        # While it runs (SQLite's -wal and -shm exist then) and after a render.
        files = all_files(data)
        assert "dev-api-key" in files
        assert loose_entries(data) == []
    finally:
        serve.stop()
    assert loose_entries(data) == []


def test_an_older_data_directory_is_tightened_at_start(
    server_factory: ServerFactory,
    tmp_path: Path,
    library_umask: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = tmp_path / "data"
    first = server_factory(data_dir=data)
    account = first.account()
    render(first, account)
    first.stop()
    # What an older version left: everything readable by every local user.
    (data / "notes").mkdir(exist_ok=True)
    (data / "notes" / "old.txt").write_text("left by an older version")
    for dirpath, dirnames, filenames in os.walk(data):
        for name in dirnames:
            Path(dirpath, name).chmod(0o755)
        for name in filenames:
            Path(dirpath, name).chmod(0o644)
    data.chmod(0o755)
    loose = len(loose_entries(data))
    assert loose >= 3

    with caplog.at_level(logging.WARNING, logger="darkroom.data"):
        server = server_factory(data_dir=data)
    assert loose_entries(data) == []
    lines = [r.getMessage() for r in caplog.records if r.name == "darkroom.data"]
    assert any(
        f"made {loose} files and directories readable by the owner only" in line for line in lines
    ), lines

    # Started in-process under a umask of 022 (darkroom as a library), what it writes now is
    # owner-only too: images, a new webhook, the database's journal.
    render(server, server.account())
    assert loose_entries(data) == []


# -- webhook secrets ---------------------------------------------------------------------------


def test_webhook_secrets_are_stored_encrypted_and_deliveries_verify(
    server: LiveServer, receivers: list[Receiver]
) -> None:
    account = server.account()
    receiver = new_receiver(receivers)
    webhook_id = register(server, account, receiver)
    secret = receiver.secret
    assert secret.startswith("whsec_")

    stored = stored_secret(server, webhook_id)
    assert stored.startswith("v1:") and len(stored) <= 100  # the column's size
    assert secret not in stored and secret.removeprefix("whsec_") not in stored
    assert stored != stored_secret(server, register(server, account, new_receiver(receivers)))

    project = render(server, account)
    event = verified(receiver, completed(receiver, project["id"]))
    assert event["type"] == "image.completed" and event["payload"]["id"] == project["id"]
    assert all(r.signature_ok for r in receiver.received)


@pytest.mark.skipif(
    ON_POSTGRES, reason="the embedded default; a cluster waits for `darkroom secrets seal`"
)
def test_plaintext_secrets_of_an_older_version_are_encrypted_at_start(
    server_factory: ServerFactory, receivers: list[Receiver], caplog: pytest.LogCaptureFixture
) -> None:
    first = server_factory()
    account = first.account()
    receiver = new_receiver(receivers)
    webhook_id = register(first, account, receiver)
    first.stop()
    store_secret(first, webhook_id, receiver.secret)  # as an older version kept it

    with caplog.at_level(logging.INFO, logger="darkroom.webhooks"):
        server = server_factory()
    stored = stored_secret(server, webhook_id)
    assert stored.startswith("v1:") and receiver.secret.removeprefix("whsec_") not in stored
    lines = [r.getMessage() for r in caplog.records if r.name == "darkroom.webhooks"]
    assert any("encrypted 1 stored in clear" in line for line in lines), lines
    # Once only: a second pass finds nothing in clear.
    again = seal(server.services.db, server.services.webhooks.box)
    assert (again.sealed, again.unreadable) == (0, [])
    assert stored_secret(server, webhook_id) == stored

    project = render(server, account)
    verified(receiver, completed(receiver, project["id"]))

    # During a rolling upgrade an older node may still write a secret in clear: it signs too.
    store_secret(server, webhook_id, receiver.secret)
    project = render(server, account)
    verified(receiver, completed(receiver, project["id"]))


def test_rotating_the_server_secret(
    server_factory: ServerFactory,
    tmp_path: Path,
    receivers: list[Receiver],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "data"
    links = {"storage_links": "proxy"}  # darkroom's own signed links, on S3 runs too
    old = server_factory(secret_key="old-secret", **links)
    account = old.account()
    first = new_receiver(receivers)
    first_id = register(old, account, first)
    before = render(old, account)
    verified(first, completed(first, before["id"]))
    old_link = before["downloads"][0]["url"].removeprefix(old.url)
    old.stop()

    # Step 1: the new key, with the old one among the previous keys.
    during = server_factory(secret_key="new-secret", previous_secret_keys="old-secret", **links)
    with during.client() as client:
        assert client.get(old_link).status_code == 200  # a link signed with the old key
    second = new_receiver(receivers)
    register(during, account, second)
    project = render(during, account)
    verified(first, completed(first, project["id"]))  # its secret sealed under the old key
    verified(second, completed(second, project["id"]))
    during.stop()

    # Step 2: re-encrypt every stored secret under the new key (once; a second run finds none).
    env = {"DARKROOM_SECRET_KEY": "new-secret", "DARKROOM_PREVIOUS_SECRET_KEYS": "old-secret"}
    sealed_before = stored_secret(during, first_id)
    status, answer = rotate(data, env, monkeypatch, capsys)
    assert (status, answer["reencrypted"], answer["already_current"]) == (0, 1, 1), answer
    assert stored_secret(during, first_id) not in (sealed_before, first.secret)
    status, answer = rotate(data, env, monkeypatch, capsys)
    assert (status, answer["reencrypted"], answer["already_current"]) == (0, 0, 2), answer

    # Step 3: the old key dropped. Deliveries still sign; links of the old key no longer work.
    after = server_factory(secret_key="new-secret", **links)
    project = render(after, account)
    verified(first, completed(first, project["id"]))
    verified(second, completed(second, project["id"]))
    with after.client() as client:
        assert client.get(old_link).status_code == 403


def test_a_wrong_server_secret_fails_clearly_and_loses_no_delivery(
    server_factory: ServerFactory,
    tmp_path: Path,
    receivers: list[Receiver],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    right = server_factory(secret_key="right-secret", **FAST)
    account = right.account()
    receiver = new_receiver(receivers)
    webhook_id = register(right, account, receiver)
    right.stop()
    stored = stored_secret(right, webhook_id)

    # Started with another key (DARKROOM_SECRET_KEY changed, or secret.key lost): it serves,
    # says what is wrong once, and sends nothing unsigned.
    with caplog.at_level(logging.ERROR, logger="darkroom.webhooks"):
        wrong = server_factory(secret_key="wrong-secret", **FAST)
    lines = [r.getMessage() for r in caplog.records if r.name == "darkroom.webhooks"]
    assert any(
        "1 cannot be decrypted" in line and "DARKROOM_PREVIOUS_SECRET_KEYS" in line
        for line in lines
    ), lines
    project = render(wrong, account)
    with wrong.client(account) as client:

        def failed_clearly() -> bool:
            listed = client.get(f"/v1/webhooks/{webhook_id}/deliveries").json()["data"]
            errors = [d["last_error"] or "" for d in listed if d["project_id"] == project["id"]]
            return any("DARKROOM_PREVIOUS_SECRET_KEYS" in e for e in errors)

        wait_until(failed_clearly, "a delivery attempt failed with the reason")
        assert client.get("/healthz").status_code == 200
    assert receiver.received == []
    # The rotate command leaves what it cannot read as it is, and says so.
    status, answer = rotate(
        tmp_path / "data", {"DARKROOM_SECRET_KEY": "wrong-secret"}, monkeypatch, capsys
    )
    assert (status, answer["unreadable"], answer["reencrypted"]) == (1, [webhook_id], 0)
    assert stored_secret(wrong, webhook_id) == stored
    wrong.stop()

    # With the right key among the previous ones, the delivery kept pending goes through.
    fixed = server_factory(secret_key="wrong-secret", previous_secret_keys="right-secret", **FAST)
    # (Within a lease's length at most, 40 s, should the stopped server have held its lease.)
    verified(receiver, completed(receiver, project["id"], timeout=60))
    fixed.stop()


# -- a rolling upgrade -------------------------------------------------------------------------


def signs_as_before(server: LiveServer, webhook_id: str, receiver: Receiver) -> bool:
    """Whether a node of the release before the encryption of webhook secrets would send
    ``receiver`` a delivery it verifies: that release signed with the endpoint's secret column
    as it is (``signature(delivery.secret, ...)``)."""
    body = b'{"type": "image.completed", "payload": {}}'
    stamp = int(time.time())
    headers = {
        "webhook-id": "msg_old",
        "magic-hour-event-timestamp": str(stamp),
        "magic-hour-event-signature": signature(stored_secret(server, webhook_id), stamp, body),
    }
    try:
        verify_webhook(receiver.secret, body, headers)
    except ValueError:
        return False
    return True


@pytest.mark.skipif(not ON_POSTGRES, reason="a cluster: nodes of two releases on one database")
def test_webhooks_stay_verifiable_through_a_rolling_upgrade(
    server_factory: ServerFactory,
    databases: Databases,
    tmp_path: Path,
    receivers: list[Receiver],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A cluster upgraded from the release before webhook secrets were encrypted (schema 0009),
    one node at a time: while an old node still runs, the new ones leave the stored secrets as
    the old node reads them (it signs with the column as it is), and store new ones so too;
    `darkroom secrets seal`, run once every node is new, encrypts them all."""
    data = tmp_path / "data"
    url = databases.empty(data)
    engine = create_engine(url)
    old = new_receiver(receivers)
    old.secret = new_secret()
    try:
        with engine.begin() as conn:  # the database as the old release left it
            config = alembic_config(url)
            config.attributes["connection"] = conn
            command.upgrade(config, "0009")
            conn.execute(
                text(
                    "INSERT INTO accounts (id, name, tier, balance, created_at) "
                    "VALUES ('acct_old', 'old', 'business', 10000, now())"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO webhook_endpoints (id, account_id, url, events, secret, "
                    "created_at) VALUES ('wh_old', 'acct_old', :url, '[\"image.completed\"]', "
                    ":secret, now())"
                ),
                {"url": old.url, "secret": old.secret},
            )
    finally:
        engine.dispose()

    # The first new node migrates, and rewrites nothing that the old node signs with.
    with caplog.at_level(logging.WARNING, logger="darkroom.webhooks"):
        new = server_factory(data_dir=data, **FAST)
    lines = [r.getMessage() for r in caplog.records if r.name == "darkroom.webhooks"]
    assert any("1 stored in clear" in line and "darkroom secrets seal" in line for line in lines)
    assert signs_as_before(new, "wh_old", old)
    key = new.services.admin.create_key("acct_old")
    account = Account(id="acct_old", key=key["api_key"], key_id=key["key_id"], tier="business")
    # An endpoint registered on a new node meanwhile: the old node can sign for it too.
    added = new_receiver(receivers)
    added_id = register(new, account, added)
    assert signs_as_before(new, added_id, added)
    project = render(new, account)
    for receiver in (old, added):  # and the new nodes sign right
        verified(receiver, completed(receiver, project["id"]))

    # Every node is new: encrypt them, once.
    status, answer = secrets_command("seal", data, {}, monkeypatch, capsys)
    assert (status, answer["encrypted"], answer["already_encrypted"]) == (0, 2, 0), answer
    assert stored_secret(new, "wh_old").startswith("v1:")
    assert stored_secret(new, added_id).startswith("v1:")
    status, answer = secrets_command("seal", data, {}, monkeypatch, capsys)
    assert (status, answer["encrypted"], answer["already_encrypted"]) == (0, 0, 2), answer
    later = new_receiver(receivers)
    assert stored_secret(new, register(new, account, later)).startswith("v1:")
    project = render(new, account)
    for receiver in (old, added, later):
        verified(receiver, completed(receiver, project["id"]))
