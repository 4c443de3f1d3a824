"""The Magic Hour v1 routes over real HTTP: bodies, statuses, content types, ownership."""

from __future__ import annotations

import io
import logging

import httpx
import pytest
from PIL import Image

from tests.conftest import Account, LiveServer
from tests.waiting import wait_until

BODY = {"image_count": 1, "style": {"prompt": "a red fox in snow"}}


def test_create_then_get_until_complete(server: LiveServer, account: Account) -> None:
    with server.client(account) as client:
        created = client.post("/v1/ai-image-generator", json=BODY | {"model": "flux-schnell"})
    assert created.status_code == 200
    assert created.headers["content-type"] == "application/json"
    body = created.json()
    assert set(body) == {"id", "credits_charged", "frame_cost"}
    # business tier, `auto` → the best resolution flux-schnell offers (2k) at twice the price
    assert body["credits_charged"] == body["frame_cost"] == 10
    project = server.wait(account, body["id"])
    for key in (
        "id",
        "name",
        "status",
        "image_count",
        "type",
        "created_at",
        "enabled",
        "credits_charged",
        "total_frame_cost",
        "downloads",
        "error",
    ):
        assert key in project
    assert project["status"] == "complete"
    assert project["type"] == "AI_IMAGE"
    assert project["enabled"] is True
    assert project["error"] is None
    assert project["backend"] == "preview"
    assert (project["width"], project["height"]) == (2048, 2048)
    assert project["name"].startswith("Ai Image - ")
    assert len(project["downloads"]) == 1
    image = httpx.get(project["downloads"][0]["url"])
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).size == (2048, 2048)
    assert server.balance(account) == 10_000 - 10


def test_queued_project_has_no_downloads_and_null_error(
    server: LiveServer, account: Account
) -> None:
    with server.client(account) as client:
        project_id = client.post("/v1/ai-image-generator", json=BODY).json()["id"]
        first = client.get(f"/v1/image-projects/{project_id}").json()
    assert first["status"] in ("queued", "rendering", "complete")
    if first["status"] != "complete":
        assert first["downloads"] == []
    assert first["error"] is None


def test_null_optional_fields_are_accepted(server: LiveServer, account: Account) -> None:
    body = {
        "image_count": 1,
        "style": {"prompt": "x", "tool": None, "quality_mode": None},
        "model": None,
        "aspect_ratio": None,
        "orientation": None,
        "resolution": None,
        "name": None,
    }
    with server.client(account) as client:
        response = client.post("/v1/ai-image-generator", json=body)
    assert response.status_code == 200, response.text


def test_body_without_json_content_type_is_still_json(server: LiveServer, account: Account) -> None:
    with server.client(account) as client:
        response = client.post(
            "/v1/ai-image-generator",
            content=b'{"image_count": 1, "style": {"prompt": "plain curl"}}',
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 200, response.text


def test_bad_input_is_a_400_naming_the_field(server: LiveServer, account: Account) -> None:
    cases = [
        (b"", "Missing request body"),
        (b"{", "Malformed JSON body"),
        (b"[]", "Request body"),
        (b'{"style": {"prompt": "x"}}', "image_count"),
        (b'{"image_count": 1}', "style"),
        (b'{"image_count": 1, "style": {}}', "style.prompt"),
        (b'{"image_count": 1, "style": {"prompt": "   "}}', "style.prompt"),
        (b'{"image_count": "many", "style": {"prompt": "x"}}', "image_count"),
        (b'{"image_count": 0, "style": {"prompt": "x"}}', "image_count"),
        (b'{"image_count": 5, "style": {"prompt": "x"}}', "image_count"),
        (b'{"image_count": 1, "style": {"prompt": "x"}, "model": "dall-e-9"}', "model"),
        (b'{"image_count": 1, "style": {"prompt": "x"}, "model": "krea-3"}', "model"),
        (b'{"image_count": 1, "style": {"prompt": "x"}, "aspect_ratio": "5:4"}', "aspect_ratio"),
        (b'{"image_count": 1, "style": {"prompt": "x"}, "orientation": "diagonal"}', "orientation"),
        (b'{"image_count": 1, "style": {"prompt": "x"}, "resolution": "8k"}', "resolution"),
        (b'{"image_count": 1, "style": {"prompt": "x", "tool": "ai-nope"}}', "style.tool"),
        (b'{"image_count": 1, "style": {"prompt": "x", "quality_mode": "ultra"}}', "quality_mode"),
        (
            b'{"image_count": 1, "style": {"prompt": "x"}, "model": "nano-banana", '
            b'"resolution": "2k"}',
            "resolution",
        ),
        (b'{"image_count": 1, "style": {"prompt": "x"}, "seed": -1}', "seed"),
        (b'{"image_count": 1, "style": {"prompt": "' + b"y" * 4001 + b'"}}', "style.prompt"),
    ]
    before = server.balance(account)
    with server.client(account) as client:
        for raw, needle in cases:
            response = client.post(
                "/v1/ai-image-generator", content=raw, headers={"content-type": "application/json"}
            )
            assert response.status_code == 400, (raw, response.text)
            assert response.headers["content-type"] == "application/json"
            assert needle in response.json()["message"], (raw, response.json())
    assert server.balance(account) == before


def test_auth_errors(server: LiveServer, account: Account) -> None:
    with server.client() as anonymous:
        for headers in (
            {},
            {"Authorization": "Bearer dk_wrong"},
            {"Authorization": "Basic abc"},
            {"Authorization": f"Token {account.key}"},
        ):
            response = anonymous.post("/v1/ai-image-generator", json=BODY, headers=headers)
            assert response.status_code == 401
            assert response.json() == {"message": "Unauthorized"}
        assert anonymous.get("/v1/image-projects/img_abc").status_code == 401


def test_revoked_key_is_refused(server: LiveServer, account: Account) -> None:
    from darkroom.core import accounts

    accounts.revoke_key(server.services.db, account.key_id)
    with server.client(account) as client:
        assert client.post("/v1/ai-image-generator", json=BODY).status_code == 401


def test_insufficient_credits_is_402_and_charges_nothing(server: LiveServer) -> None:
    poor = server.account(tier="free", credits=9)
    with server.client(poor) as client:
        response = client.post("/v1/ai-image-generator", json=BODY | {"image_count": 2})
    assert response.status_code == 402
    assert "10 credits" in response.json()["message"]
    assert server.balance(poor) == 9


def test_tier_gating_is_403(server: LiveServer) -> None:
    free = server.account(tier="free", credits=10_000)
    with server.client(free) as client:
        model = client.post("/v1/ai-image-generator", json=BODY | {"model": "gpt-image-2"})
        res = client.post("/v1/ai-image-generator", json=BODY | {"resolution": "2k"})
        ok = client.post("/v1/ai-image-generator", json=BODY | {"resolution": "1k"})
    assert model.status_code == 403
    assert "gpt-image-2" in model.json()["message"]
    assert res.status_code == 403
    assert "2k" in res.json()["message"]
    assert ok.status_code == 200
    assert server.balance(free) == 10_000 - 5


def test_unknown_and_foreign_projects_are_404(server: LiveServer, account: Account) -> None:
    other = server.account(name="other")
    with server.client(account) as client:
        project_id = client.post("/v1/ai-image-generator", json=BODY).json()["id"]
        assert client.get("/v1/image-projects/img_doesnotexist").status_code == 404
        assert client.get("/v1/image-projects/img_doesnotexist").json() == {"message": "Not Found"}
    with server.client(other) as intruder:
        assert intruder.get(f"/v1/image-projects/{project_id}").status_code == 404
        assert intruder.delete(f"/v1/image-projects/{project_id}").status_code == 404
    server.wait(account, project_id)  # still there for its owner


def test_delete_removes_files_and_project(server: LiveServer, account: Account) -> None:
    with server.client(account) as client:
        project_id = client.post("/v1/ai-image-generator", json=BODY | {"image_count": 3}).json()[
            "id"
        ]
        project = server.wait(account, project_id)
        assert len(server.stored(project_id)) == 3
        deleted = client.delete(f"/v1/image-projects/{project_id}")
        assert deleted.status_code == 204
        assert deleted.content == b""
        assert client.get(f"/v1/image-projects/{project_id}").status_code == 404
        assert client.delete(f"/v1/image-projects/{project_id}").status_code == 404
    assert server.stored(project_id) == []
    assert httpx.get(project["downloads"][0]["url"]).status_code == 404


def test_unknown_route_and_method_are_json(server: LiveServer, account: Account) -> None:
    with server.client(account) as client:
        missing = client.get("/v1/nothing-here")
        wrong_method = client.put("/v1/ai-image-generator", json=BODY)
    assert missing.status_code == 404
    assert missing.json() == {"message": "Not Found"}
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"] == "application/json"
    assert "message" in wrong_method.json()


def test_rate_limit_is_429_with_retry_after(server_factory) -> None:  # type: ignore[no-untyped-def]
    server = server_factory(rate_limit_per_minute=3)
    account = server.account()
    with server.client(account) as client:
        statuses = [client.post("/v1/ai-image-generator", json=BODY) for _ in range(5)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429, 429]
    assert int(statuses[3].headers["retry-after"]) >= 1
    assert "Too many requests" in statuses[3].json()["message"]
    assert server.balance(account) == 10_000 - 3 * 10


def test_models_listing_shows_prices_and_tiers(server: LiveServer) -> None:
    free = server.account(tier="free")
    with server.client() as anonymous:
        public = anonymous.get("/v1/models").json()
    with server.client(free) as client:
        mine = client.get("/v1/models").json()
        catalog = client.get("/v1/catalog").json()
    assert public["object"] == "list"
    by_id = {m["id"]: m for m in public["data"]}
    assert set(by_id) == {*server.services.catalog.models, "dall-e-2", "dall-e-3", "gpt-image-1"}
    assert len(by_id) == 16 + 3
    assert by_id["dall-e-2"]["alias_for"] == "flux-schnell"
    assert by_id["seedream-v4"]["credits_per_image"] == {"640px": 40, "1k": 40, "2k": 80, "4k": 160}
    # a price row per resolution where the price depends on it otherwise
    assert by_id["gpt-image-2"]["credits_per_image"] == {
        "640px": 50,
        "1k": 100,
        "2k": 200,
        "4k": 400,
    }
    assert (by_id["qwen-edit"]["generates"], by_id["qwen-edit"]["max_input_images"]) == (False, 3)
    assert (by_id["flux-2-klein"]["edits"], by_id["flux-2-klein"]["max_input_images"]) == (True, 6)
    assert by_id["gpt-image-1"]["max_input_images"] == 16
    assert by_id["nano-banana-2"]["image_counts"] == [1, 4, 9, 16]
    assert by_id["flux-schnell"]["sizes"]["16:9"]["1k"] == [1024, 576]
    assert "available" not in by_id["gpt-image-2"]
    mine_by_id = {m["id"]: m for m in mine["data"]}
    # a key sees only what its tier may use: gpt-image-2 (and gpt-image-1, served by it) are not
    assert "gpt-image-2" not in mine_by_id
    assert "gpt-image-1" not in mine_by_id
    assert "nano-banana-pro" not in mine_by_id
    assert mine_by_id["dall-e-3"]["alias_for"] == "z-image-turbo"
    assert mine_by_id["flux-schnell"]["available"] is True
    assert mine_by_id["flux-schnell"]["resolutions_for_tier"] == ["640px", "1k"]
    assert len(catalog["tools"]) == 35
    assert catalog["your_tier"] == "free"


def test_openapi_document_describes_the_create_body(server: LiveServer) -> None:
    with server.client() as client:
        spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/ai-image-generator"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert "$ref" not in str(schema)
    assert set(schema["required"]) == {"image_count", "style"}
    assert schema["properties"]["style"]["required"] == ["prompt"]


def test_client_hanging_up_mid_body_is_not_logged_as_a_crash(
    server: LiveServer, account: Account, caplog: pytest.LogCaptureFixture
) -> None:
    import socket
    import time

    head = (
        "POST /v1/ai-image-generator HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {account.key}\r\nContent-Type: application/json\r\n"
        "Content-Length: 500\r\n\r\n"
    ).encode()
    with caplog.at_level(logging.INFO):
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            s.sendall(head + b'{"image_count": 1, "sty')
            time.sleep(0.2)  # a client that stalls mid-body, then hangs up
        # Until the server is done with it: its access line is the last thing it writes.
        wait_until(
            lambda: [
                r for r in caplog.records if getattr(r, "route", None) == "/v1/ai-image-generator"
            ],
            "the hung-up request's access line",
        )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert server.balance(account) == 10_000
    with server.client(account) as client:  # and the server carries on
        assert client.post("/v1/ai-image-generator", json=BODY).status_code == 200
