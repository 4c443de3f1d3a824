"""The account's projects, a page at a time (``GET /v1/image-projects``, darkroom's addition):
newest first, only the key's own and not deleted ones, through the API, the SDK and the CLI."""

from __future__ import annotations

import asyncio
import json

import httpx

import darkroom
from tests.conftest import Account, LiveServer
from tests.test_cli_client import darkroom as darkroom_cli

BODY = {"image_count": 1, "resolution": "640px", "style": {"prompt": "a lighthouse"}}


def create(server: LiveServer, account: Account, count: int) -> list[str]:
    ids = []
    with server.client(account) as client:
        for _ in range(count):
            response = client.post("/v1/ai-image-generator", json=BODY)
            assert response.status_code == 200, response.text
            ids.append(response.json()["id"])
    return ids


def test_pages_newest_first_of_the_keys_own_projects(server: LiveServer, account: Account) -> None:
    ids = create(server, account, 5)
    other = server.account(name="other")
    create(server, other, 2)
    for project_id in ids:
        server.wait(account, project_id)
    newest_first = [ids[4], ids[3], ids[2], ids[0]]  # ids[1] is deleted below
    with server.client(account) as client:
        assert client.delete(f"/v1/image-projects/{ids[1]}").status_code == 204
        first = client.get("/v1/image-projects", params={"limit": 2}).json()
        second = client.get(
            "/v1/image-projects", params={"limit": 2, "before": first["next_before"]}
        ).json()
        last = client.get(
            "/v1/image-projects", params={"limit": 2, "before": newest_first[-1]}
        ).json()
        complete = client.get("/v1/image-projects", params={"status": "complete"}).json()
        bad_cursor = client.get("/v1/image-projects", params={"before": "img_nosuchproject00"})
        bad_limit = client.get("/v1/image-projects", params={"limit": 0})
    assert [p["id"] for p in first["data"]] == newest_first[:2]
    assert first["has_more"] is True and first["next_before"] == ids[3]
    assert [p["id"] for p in second["data"]] == newest_first[2:]
    assert second["has_more"] is False and second["next_before"] is None
    assert last["data"] == []
    # Each item is the GET project object, download links included.
    item = first["data"][0]
    assert item["status"] == "complete" and len(item["downloads"]) == 1
    assert httpx.get(item["downloads"][0]["url"], follow_redirects=True).status_code == 200
    assert [p["id"] for p in complete["data"]] == newest_first
    assert bad_cursor.status_code == 400 and "before" in bad_cursor.json()["message"]
    assert bad_limit.status_code == 400
    assert "/v1/image-projects" in httpx.get(f"{server.url}/openapi.json").json()["paths"]


def test_the_sdk_and_the_cli_list_projects(server: LiveServer, account: Account) -> None:
    ids = create(server, account, 3)
    with darkroom.Client(token=account.key, base_url=server.url) as sdk:
        page = sdk.v1.image_projects.list(limit=2)
        rest = sdk.v1.image_projects.list(limit=2, before=page.next_before)
    assert [p.id for p in page.data + rest.data] == ids[::-1]
    assert page.has_more and not rest.has_more

    async def async_pages() -> list[str]:
        async with darkroom.AsyncClient(token=account.key, base_url=server.url) as client:
            first = await client.v1.image_projects.list(limit=1)
            after = await client.v1.image_projects.list(before=first.next_before)
        return [p.id for p in first.data + after.data]

    assert asyncio.run(async_pages()) == ids[::-1]
    listed = darkroom_cli(server, account.key, "projects", "list", "--limit", "2", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [p["id"] for p in json.loads(listed.stdout)["data"]] == ids[:0:-1]
    text = darkroom_cli(server, account.key, "projects", "list", "--limit", "2").stdout
    assert ids[2] in text and f"more: --before {ids[1]}" in text
