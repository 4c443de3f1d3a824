"""The operator's admin API (/admin/v1) over real HTTP: its token, every route with real balances
and keys, and the same answers as the operator commands."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import httpx
import pytest

from darkroom.cli.serve import banner
from tests.conftest import Account, LiveServer, ServerFactory, make_settings, sqlite_only
from tests.test_cli import as_json, darkroom

BODY = {"image_count": 1, "resolution": "1k", "style": {"prompt": "a lighthouse"}}


def operator_token(server: LiveServer) -> str:
    """The configured token (a shared database needs one), else the one made up on disk."""
    return (
        server.settings.admin_token
        or server.settings.generated_admin_token_file.read_text().strip()
    )


def admin_client(server: LiveServer, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token or operator_token(server)}"}
    return httpx.Client(base_url=f"{server.url}/admin/v1", headers=headers, timeout=30)


def as_account(server: LiveServer, created: dict[str, Any]) -> Account:
    return Account(
        id=created["account_id"],
        key=created["api_key"],
        key_id=created["key_id"],
        tier=created["tier"],
    )


@sqlite_only  # a shared database takes the token from settings only
def test_token_file_is_created_owner_only_and_reused(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    first = server_factory()
    token_file = first.settings.generated_admin_token_file
    token = token_file.read_text().strip()
    assert len(token) >= 32
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    with admin_client(first) as admin:
        assert admin.get("/accounts").status_code == 200
    first.stop()

    second = server_factory()  # the same data directory
    assert token_file.read_text().strip() == token
    with admin_client(second, token) as admin:
        assert admin.get("/accounts").status_code == 200


def test_configured_token_wins_and_no_file_is_written(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory(data_dir=tmp_path / "other", admin_token="operator-secret-123")
    assert not server.settings.generated_admin_token_file.exists()
    with admin_client(server, "operator-secret-123") as admin:
        assert admin.get("/accounts").status_code == 200
    with admin_client(server, "operator-secret-124") as admin:
        assert admin.get("/accounts").status_code == 401


def test_banner_says_where_the_token_is_without_showing_it(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, admin_token="")  # made up in the data directory
    text = banner(settings, None, str(settings.data_dir))
    assert f"{settings.base_url}/admin/v1" in text
    assert str(settings.generated_admin_token_file.resolve()) in text
    configured = make_settings(tmp_path, admin_token="operator-secret-123")
    text = banner(configured, None, str(configured.data_dir))
    assert "from DARKROOM_ADMIN_TOKEN" in text
    assert "operator-secret-123" not in text


ROUTES = [
    ("GET", "/accounts", None),
    ("POST", "/accounts", {"name": "intruder", "tier": "business", "credits": 10**9}),
    ("GET", "/accounts/{account}", None),
    ("PATCH", "/accounts/{account}", {"tier": "business"}),
    ("POST", "/accounts/{account}/credits", {"amount": 10**9}),
    ("POST", "/accounts/{account}/keys", None),
    ("DELETE", "/keys/{key}", None),
    ("GET", "/accounts/{account}/usage", None),
    ("GET", "/projects/img_nope", None),
]


def test_account_keys_and_wrong_tokens_are_refused(server: LiveServer) -> None:
    account = server.account(tier="free", credits=5)
    attempts = {
        "no token": {},
        "account key": {"Authorization": f"Bearer {account.key}"},
        "wrong token": {"Authorization": "Bearer " + "x" * 64},
        "another scheme": {"Authorization": f"Basic {operator_token(server)}"},
    }
    with httpx.Client(base_url=f"{server.url}/admin/v1", timeout=30) as client:
        for method, path, body in ROUTES:
            url = path.format(account=account.id, key=account.key_id)
            for what, headers in attempts.items():
                response = client.request(method, url, json=body, headers=headers)
                assert response.status_code == 401, (method, url, what, response.text)
                message = response.json()["message"]
                if what == "account key":
                    assert "account API key" in message
                elif what == "wrong token":
                    assert message == "Invalid operator token"
                else:
                    assert "operator token" in message
    # nothing happened: no account, no credits, no tier change, the key still works
    with admin_client(server) as admin:
        assert [a["id"] for a in admin.get("/accounts").json()["accounts"]] == [account.id]
        shown = admin.get(f"/accounts/{account.id}").json()
    assert (shown["tier"], shown["balance"], len(shown["keys"])) == ("free", 5, 1)
    with server.client(account) as client:
        assert client.get("/v1/account").status_code == 200


def test_create_grant_and_show_with_real_balances(server: LiveServer) -> None:
    with admin_client(server) as admin:
        created = admin.post(
            "/accounts",
            json={"name": "Ada", "tier": "pro", "credits": 100, "email": "ada@example.org"},
        )
        assert created.status_code == 201, created.text
        data = created.json()
        assert data["api_key"].startswith("dk_")
        assert (data["name"], data["tier"], data["credits"]) == ("Ada", "pro", 100)
        ada = as_account(server, data)
        with server.client(ada) as client:
            account = client.get("/v1/account").json()
        assert (account["id"], account["credits"], account["tier"]) == (ada.id, 100, "pro")
        assert account["email"] == "ada@example.org"

        granted = admin.post(f"/accounts/{ada.id}/credits", json={"amount": 250, "note": "hi"})
        assert granted.status_code == 200, granted.text
        assert granted.json() == {
            "account_id": ada.id,
            "granted": 250,
            "note": "hi",
            "balance": 350,
        }
        with server.client(ada) as client:
            assert client.get("/v1/account").json()["credits"] == 350

        shown = admin.get(f"/accounts/{ada.id}").json()
        assert (shown["id"], shown["tier"], shown["balance"]) == (ada.id, "pro", 350)
        assert [
            (e["kind"], e["amount"], e["balance_after"], e["note"]) for e in shown["ledger"]
        ] == [
            ("grant", 250, 350, "hi"),
            ("grant", 100, 100, "opening balance"),
        ]
        assert [k["id"] for k in shown["keys"]] == [ada.key_id]
        assert ada.key not in str(shown)
        assert len(admin.get(f"/accounts/{ada.id}", params={"entries": 1}).json()["ledger"]) == 1
        listed = admin.get("/accounts").json()["accounts"]
        assert {"id": ada.id, "name": "Ada", "tier": "pro", "balance": 350} in listed


def test_keys_created_and_revoked_take_effect_at_once(server: LiveServer) -> None:
    account = server.account(tier="free", credits=50)
    with admin_client(server) as admin:
        created = admin.post(f"/accounts/{account.id}/keys")
        assert created.status_code == 201, created.text
        new = created.json()
        assert new["account_id"] == account.id
        headers = {"Authorization": f"Bearer {new['api_key']}"}
        with server.client() as client:
            # used once, so the server remembers it as valid (DARKROOM_AUTH_CACHE_SECONDS)
            assert client.get("/v1/account", headers=headers).json()["id"] == account.id
            revoked = admin.delete(f"/keys/{new['key_id']}")
            assert revoked.status_code == 200, revoked.text
            assert revoked.json() == {"key_id": new["key_id"], "revoked": True}
            assert client.get("/v1/account", headers=headers).status_code == 401
        with server.client(account) as client:
            assert client.get("/v1/account").status_code == 200  # the other key still works
        again = admin.delete(f"/keys/{new['key_id']}")
        assert again.status_code == 404
        assert new["key_id"] in again.json()["message"]
        assert admin.post("/accounts/acct_nope/keys").status_code == 404
        shown = admin.get(f"/accounts/{account.id}").json()
    assert [k["revoked_at"] is not None for k in shown["keys"]] == [False, True]


def test_tier_change_is_enforced_on_the_next_create(server: LiveServer) -> None:
    account = server.account(tier="free", credits=10_000)
    body = BODY | {"model": "nano-banana-pro"}  # creator tier and above
    with server.client(account) as client, admin_client(server) as admin:
        refused = client.post("/v1/ai-image-generator", json=body)
        assert refused.status_code == 403, refused.text
        changed = admin.patch(f"/accounts/{account.id}", json={"tier": "creator"})
        assert changed.status_code == 200, changed.text
        assert (changed.json()["id"], changed.json()["tier"]) == (account.id, "creator")
        created = client.post("/v1/ai-image-generator", json=body)
        assert created.status_code == 200, created.text
        assert server.balance(account) == 10_000 - created.json()["credits_charged"]
        assert client.get("/v1/account").json()["tier"] == "creator"
        back = admin.patch(f"/accounts/{account.id}", json={"tier": "free"})
        assert back.status_code == 200
        assert client.post("/v1/ai-image-generator", json=body).status_code == 403


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("POST", "/accounts", {"tier": "pro"}, 400, "name"),
        ("POST", "/accounts", {"name": "   "}, 400, "name must not be empty"),
        ("POST", "/accounts", {"name": "x" * 201}, 400, "name must be at most 200"),
        ("POST", "/accounts", {"name": "x", "tier": "gold"}, 400, "tier must be one of"),
        ("POST", "/accounts", {"name": "x", "credits": -1}, 400, "credits must not be negative"),
        ("POST", "/accounts", {"name": "x", "credits": "5"}, 400, "credits"),
        ("POST", "/accounts", {"name": "x", "credits": 10**13}, 400, "credits must be at most"),
        ("POST", "/accounts", {"name": "x", "email": "e" * 400}, 400, "email"),
        ("POST", "/accounts", {"name": "x", "teir": "pro"}, 400, "teir"),
        ("POST", "/accounts", None, 400, "Missing request body"),
        ("PATCH", "/accounts/{account}", {"tier": "gold"}, 400, "tier must be one of"),
        ("PATCH", "/accounts/{account}", {}, 400, "tier"),
        ("PATCH", "/accounts/acct_nope", {"tier": "pro"}, 404, "acct_nope"),
        ("POST", "/accounts/{account}/credits", {"amount": 0}, 400, "positive"),
        ("POST", "/accounts/{account}/credits", {"amount": -5}, 400, "positive"),
        ("POST", "/accounts/{account}/credits", {"amount": 1.5}, 400, "amount"),
        ("POST", "/accounts/{account}/credits", {"note": "x"}, 400, "amount"),
        ("POST", "/accounts/{account}/credits", {"amount": 1, "note": "n" * 501}, 400, "note"),
        ("POST", "/accounts/acct_nope/credits", {"amount": 5}, 404, "acct_nope"),
        ("GET", "/accounts/acct_nope", None, 404, "acct_nope"),
        ("GET", "/accounts/{account}?entries=-1", None, 400, "entries"),
        ("GET", "/accounts/acct_nope/usage", None, 404, "acct_nope"),
        ("DELETE", "/keys/key_nope", None, 404, "key_nope"),
        ("GET", "/projects/img_nope", None, 404, "img_nope"),
    ],
)
def test_bad_input_is_a_4xx_with_a_reason(
    server: LiveServer, method: str, path: str, body: Any, status: int, needle: str
) -> None:
    account = server.account(tier="free", credits=5)
    with admin_client(server) as admin:
        response = admin.request(method, path.format(account=account.id), json=body)
        assert response.status_code == status, response.text
        assert needle in response.json()["message"]
        shown = admin.get(f"/accounts/{account.id}").json()
        assert (shown["tier"], shown["balance"]) == ("free", 5)
        assert len(admin.get("/accounts").json()["accounts"]) == 1


def test_admin_reads_any_accounts_project(server: LiveServer) -> None:
    owners = [server.account(name="a"), server.account(name="b")]
    projects = []
    for owner in owners:
        with server.client(owner) as client:
            project_id = client.post("/v1/ai-image-generator", json=BODY).json()["id"]
        projects.append(server.wait(owner, project_id))
    with admin_client(server) as admin:
        for owner, mine in zip(owners, projects, strict=True):
            response = admin.get(f"/projects/{mine['id']}")
            assert response.status_code == 200, response.text
            seen = response.json()
            assert seen["account_id"] == owner.id
            assert {k: v for k, v in seen.items() if k not in ("account_id", "downloads")} == {
                k: v for k, v in mine.items() if k != "downloads"
            }
            assert len(seen["downloads"]) == 1
            assert httpx.get(seen["downloads"][0]["url"]).status_code == 200
        with server.client(owners[0]) as client:
            assert client.delete(f"/v1/image-projects/{projects[0]['id']}").status_code == 204
        deleted = admin.get(f"/projects/{projects[0]['id']}").json()
        assert (deleted["enabled"], deleted["downloads"]) == (False, [])
        assert admin.get("/projects/img_nope").status_code == 404


def test_cli_and_http_answer_the_same(server: LiveServer) -> None:
    data_dir = server.settings.data_dir
    account = server.account(tier="pro", credits=40)
    with server.client(account) as client:
        assert client.post("/v1/ai-image-generator", json=BODY).status_code == 200
    # an action through the CLI is seen by the running server, and the reverse
    assert as_json(data_dir, "credits", "grant", account.id, "60", "--note", "cli")["balance"] == 95
    with admin_client(server) as admin:
        admin.post(f"/accounts/{account.id}/credits", json={"amount": 5, "note": "http"})
        over_http = admin.get(f"/accounts/{account.id}").json()
    assert as_json(data_dir, "accounts", "show", account.id) == over_http
    assert over_http["balance"] == 100
    assert [e["note"] for e in over_http["ledger"][:2]] == ["http", "cli"]
    text = darkroom(data_dir, "accounts", "show", account.id).stdout
    assert "balance  100 credits" in text
    assert as_json(data_dir, "accounts", "set-tier", account.id, "business")["tier"] == "business"
    with server.client(account) as client:
        assert client.get("/v1/account").json()["tier"] == "business"
