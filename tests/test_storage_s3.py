"""Images in a real S3 server (Ceph's radosgw on loopback): presigned links that a plain HTTP
client follows, that stop working after their expiry and after DELETE; start-up refusing a bad
configuration with one line; and nodes that share only the database and the bucket.

These run on every pass (the session's radosgw starts when first needed); on S3 passes
(``DARKROOM_TEST_STORAGE=s3``) the whole suite keeps its images in it too.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from openai import OpenAI
from PIL import Image

from darkroom.storage.location import open_store
from darkroom.storage.objects import StorageConfigError
from tests.conftest import Databases, LiveServer, ServerFactory
from tests.radosgw import RadosGateway
from tests.test_storage import create
from tests.waiting import wait_until


@pytest.fixture
def gateway(s3_gateway: Callable[[], RadosGateway]) -> RadosGateway:
    return s3_gateway()


@pytest.fixture
def bucket(gateway: RadosGateway) -> str:
    name = f"b-{os.urandom(6).hex()}"
    gateway.create_bucket(name)
    return name


@pytest.fixture
def s3_server(server_factory: ServerFactory, bucket: str) -> LiveServer:
    return server_factory(storage_url=f"s3://{bucket}/images-of-tests")


def test_links_are_presigned_urls_of_the_bucket(
    s3_server: LiveServer, gateway: RadosGateway, bucket: str
) -> None:
    account = s3_server.account()
    project = s3_server.wait(account, create(s3_server, account))
    assert project["status"] == "complete"
    for n, item in enumerate(project["downloads"], start=1):
        url = item["url"]
        assert url.startswith(f"{gateway.endpoint}/{bucket}/images-of-tests/images/")
        # The file name a client takes from the URL is the published one.
        assert urlsplit(url).path.rsplit("/", 1)[1] == f"{project['id']}-{n}.png"
        response = httpx.get(url)  # a plain client: no key, no redirect
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        assert hashlib.sha256(response.content).hexdigest() == item["sha256"]
        assert len(response.content) == item["bytes"]
        assert Image.open(io.BytesIO(response.content)).size == (
            project["width"],
            project["height"],
        )
    # darkroom's own signed link (e.g. one signed before the switch to S3) redirects there.
    own = s3_server.services.signer.sign(f"{project['id']}-1.png", int(time.time()) + 60)
    redirected = httpx.get(own)
    assert redirected.status_code == 307
    assert redirected.headers["location"].startswith(gateway.endpoint)
    followed = httpx.get(own, follow_redirects=True)
    assert hashlib.sha256(followed.content).hexdigest() == project["downloads"][0]["sha256"]


def test_a_link_stops_working_after_delete_whoever_signed_it(
    server_factory: ServerFactory, databases: Databases, bucket: str, tmp_path: Path
) -> None:
    storage = f"s3://{bucket}/shared"
    api = server_factory(storage_url=storage, workers=0, data_dir=tmp_path / "api")
    worker = server_factory(
        storage_url=storage,
        data_dir=tmp_path / "worker",
        database_url=databases.url(tmp_path / "api"),
    )
    account = api.account()
    project_id = create(api, account)
    project = api.wait(account, project_id)
    on_worker = worker.wait(account, project_id)  # links made by the other node
    presigned = [d["url"] for d in project["downloads"] + on_worker["downloads"]]
    name = f"{project_id}-1.png"
    signed = [node.services.signer.sign(name, int(time.time()) + 600) for node in (api, worker)]
    assert all(httpx.get(url).status_code == 200 for url in presigned)
    assert all(httpx.get(url, follow_redirects=True).status_code == 200 for url in signed)
    with api.client(account) as client:
        assert client.delete(f"/v1/image-projects/{project_id}").status_code == 204
    assert [httpx.get(url).status_code for url in presigned] == [404] * len(presigned)
    assert [httpx.get(url).status_code for url in signed] == [404, 404]
    assert api.stored(project_id) == []


def test_a_presigned_link_expires(server_factory: ServerFactory, bucket: str) -> None:
    server = server_factory(storage_url=f"s3://{bucket}", download_ttl_seconds=2)
    account = server.account()
    project = server.wait(account, create(server, account))
    url = project["downloads"][0]["url"]
    assert httpx.get(url).status_code == 200
    wait_until(lambda: httpx.get(url).status_code == 403, timeout=20)
    # A fresh GET gives a fresh link.
    again = server.wait(account, project["id"])["downloads"][0]["url"]
    assert httpx.get(again).status_code == 200


def test_the_openai_dialect_and_edits_across_nodes_that_share_no_disk(
    server_factory: ServerFactory, databases: Databases, bucket: str, tmp_path: Path
) -> None:
    storage = f"s3://{bucket}/cluster"
    api = server_factory(storage_url=storage, workers=0, data_dir=tmp_path / "api")
    server_factory(
        storage_url=storage,
        data_dir=tmp_path / "worker",
        database_url=databases.url(tmp_path / "api"),
    )
    account = api.account(credits=1_000)
    client = OpenAI(api_key=account.key, base_url=f"{api.url}/v1", max_retries=0)
    b64 = client.images.generate(
        prompt="a red door", model="dall-e-2", size="256x256", response_format="b64_json"
    )
    generated = base64.b64decode(b64.data[0].b64_json or "")
    assert Image.open(io.BytesIO(generated)).size == (256, 256)
    by_url = client.images.generate(
        prompt="a red door", model="dall-e-2", size="256x256", response_format="url"
    )
    fetched = httpx.get(by_url.data[0].url or "")
    assert fetched.status_code == 200
    assert Image.open(io.BytesIO(fetched.content)).size == (256, 256)
    source = io.BytesIO()
    Image.new("RGB", (256, 256), (255, 0, 0)).save(source, format="PNG")
    edited = client.images.edit(
        image=("red.png", source.getvalue(), "image/png"),
        prompt="a blue circle",
        model="dall-e-2",
        size="256x256",
        response_format="b64_json",
    )
    image = Image.open(io.BytesIO(base64.b64decode(edited.data[0].b64_json or ""))).convert("RGB")
    assert image.size == (256, 256)
    project_id = (edited.model_extra or {})["darkroom"]["project_id"]
    # The edit's sources were in the bucket for the worker, and went once it rendered.
    wait_until(
        lambda: not [key for key in api.stored(project_id) if key.startswith("sources/")],
        "the sources to be removed",
    )


def test_ready_reports_the_bucket(s3_server: LiveServer, bucket: str) -> None:
    ready = httpx.get(f"{s3_server.url}/readyz").json()
    assert ready["storage"] is True
    assert ready["storage_location"].startswith(f"s3://{bucket}/images-of-tests/")


@pytest.fixture
def aws_env(gateway: RadosGateway) -> Iterator[None]:
    """The gateway's AWS variables, restored after the test changes them."""
    saved = {name: os.environ.get(name) for name in RadosGateway.ENV_NAMES}
    os.environ.update(gateway.env())
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.usefixtures("aws_env")
@pytest.mark.parametrize(
    ("change", "url", "message"),
    [
        ({}, "s3://no-such-bucket-here", "'no-such-bucket-here' at http://127.0.0.1:"),
        ({"AWS_SECRET_ACCESS_KEY": "wrong"}, "", "refused the credentials"),
        ({"AWS_ACCESS_KEY_ID": "NOBODY"}, "", "refused the access key"),
        ({"AWS_ENDPOINT_URL": "free-port"}, "", "cannot reach the S3 endpoint"),
        ({}, "s3://x", "is not an S3 location"),
        ({}, "gs://bucket", "expected a directory, file:///path or s3://bucket/prefix"),
    ],
)
def test_a_bad_configuration_is_refused_at_start_up(
    change: dict[str, str], url: str, message: str, bucket: str, tmp_path: Path
) -> None:
    for name, value in change.items():
        os.environ[name] = f"http://127.0.0.1:{_free_port()}" if value == "free-port" else value
    with pytest.raises(StorageConfigError) as excinfo:
        open_store(url or f"s3://{bucket}", tmp_path)
    assert message in excinfo.value.message
    assert "\n" not in excinfo.value.message
    if url == "s3://no-such-bucket-here":
        assert "does not exist" in excinfo.value.message


@pytest.mark.usefixtures("aws_env")
def test_the_cli_says_what_is_wrong_in_one_line(
    databases: Databases, tmp_path: Path, gateway: RadosGateway
) -> None:
    env = {**os.environ, **databases.env(tmp_path), **gateway.env()}
    env["AWS_SECRET_ACCESS_KEY"] = "wrong"
    env["DARKROOM_STORAGE_URL"] = "s3://darkroom-tests"
    started = subprocess.run(
        [sys.executable, "-m", "darkroom.cli.main", "worker", "--data-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 2
    lines = started.stderr.strip().splitlines()
    assert lines == [
        "darkroom: storage: bucket 'darkroom-tests' at "
        f"{gateway.endpoint} refused the credentials (wrong AWS_SECRET_ACCESS_KEY)"
    ]


def test_the_web_page_may_show_images_from_the_bucket(
    s3_server: LiveServer, gateway: RadosGateway
) -> None:
    policy = httpx.get(f"{s3_server.url}/").headers["content-security-policy"]
    image_sources = next(d for d in policy.split("; ") if d.startswith("img-src"))
    assert gateway.endpoint in image_sources.split()
    assert "connect-src 'self'" in policy
