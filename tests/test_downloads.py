"""Signed download links: absolute, keyless, expiring, tamper-proof."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from darkroom.storage.signing import URLSigner
from tests.conftest import Account, LiveServer, ServerFactory

BODY = {"image_count": 2, "style": {"prompt": "a cat"}}


@pytest.fixture
def server(server_factory: ServerFactory) -> LiveServer:
    """darkroom's own links (on S3 runs: relayed by darkroom, ``storage_links=proxy``; the
    presigned links of a bucket are tests/test_storage_s3.py's)."""
    return server_factory(storage_links="proxy")


def complete_project(server: LiveServer, account: Account) -> dict:  # type: ignore[type-arg]
    with server.client(account) as client:
        project_id = client.post("/v1/ai-image-generator", json=BODY).json()["id"]
    return server.wait(account, project_id)


def test_links_are_absolute_unique_and_work_without_a_key(
    server: LiveServer, account: Account
) -> None:
    project = complete_project(server, account)
    urls = [d["url"] for d in project["downloads"]]
    assert all(u.startswith(server.url + "/downloads/") for u in urls)
    names = [urlsplit(u).path.rsplit("/", 1)[1] for u in urls]
    assert names == [f"{project['id']}-1.png", f"{project['id']}-2.png"]
    for download in project["downloads"]:
        expires_at = download["expires_at"]
        assert expires_at.endswith("Z")
        response = httpx.get(download["url"], follow_redirects=False)
        assert response.status_code == 200
        assert response.content.startswith(b"\x89PNG\r\n\x1a\n")
    stored = server.stored_image(project["id"], 1)
    assert httpx.get(urls[0], follow_redirects=True).content == stored


def test_expiry_is_about_a_day_by_default(server: LiveServer, account: Account) -> None:
    url = complete_project(server, account)["downloads"][0]["url"]
    expires = int(parse_qs(urlsplit(url).query)["expires"][0])
    assert abs(expires - (time.time() + 24 * 3600)) < 60


def test_tampered_links_are_refused(server: LiveServer, account: Account) -> None:
    project = complete_project(server, account)
    url = project["downloads"][0]["url"]
    other_name = f"{project['id']}-2.png"
    query = parse_qs(urlsplit(url).query)
    expires, signature = query["expires"][0], query["signature"][0]
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    base = f"{server.url}/downloads"
    refused = [
        f"{base}/{project['id']}-1.png?expires={expires}&signature={flipped}",
        f"{base}/{other_name}?expires={expires}&signature={signature}",
        f"{base}/{project['id']}-1.png?expires={int(expires) + 1}&signature={signature}",
        f"{base}/{project['id']}-1.png?expires={expires}",
        f"{base}/{project['id']}-1.png",
    ]
    for link in refused:
        response = httpx.get(link)
        assert response.status_code == 403, link
        assert response.json() == {"message": "This download link is invalid or has expired"}


def test_expired_link_is_refused(server: LiveServer, account: Account) -> None:
    project = complete_project(server, account)
    name = f"{project['id']}-1.png"
    expired = server.services.signer.sign(name, int(time.time()) - 1)
    assert httpx.get(expired).status_code == 403
    fresh = server.services.signer.sign(name, int(time.time()) + 60)
    assert httpx.get(fresh).status_code == 200


def test_configured_ttl_and_public_url(server_factory) -> None:  # type: ignore[no-untyped-def]
    server = server_factory(
        download_ttl_seconds=120, public_url="https://images.example.com/", storage_links="proxy"
    )
    account = server.account()
    with server.client(account) as client:
        project_id = client.post("/v1/ai-image-generator", json=BODY).json()["id"]
    url = server.wait(account, project_id)["downloads"][0]["url"]
    assert url.startswith("https://images.example.com/downloads/")
    expires = int(parse_qs(urlsplit(url).query)["expires"][0])
    assert abs(expires - (time.time() + 120)) < 10


def test_signer_rejects_other_secrets() -> None:
    a = URLSigner(b"one", "http://x")
    b = URLSigner(b"two", "http://x")
    url = a.sign("img_abcdefgh-1.png", 2_000_000_000)
    query = parse_qs(urlsplit(url).query)
    assert a.verify("img_abcdefgh-1.png", query["expires"][0], query["signature"][0])
    assert not b.verify("img_abcdefgh-1.png", query["expires"][0], query["signature"][0])
    assert not a.verify("img_abcdefgh-1.png", "not-a-number", query["signature"][0])
