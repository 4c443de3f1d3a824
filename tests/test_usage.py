"""Account usage (``GET /v1/account/usage``, ``/admin/v1/accounts/{id}/usage``, ``darkroom
accounts usage``): ledger entries and per-model totals over a time range, on a server whose
projects stay queued (no workers) so that every number is known."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from tests.conftest import Account, LiveServer, ServerFactory
from tests.test_admin import admin_client
from tests.test_cli import as_json, darkroom


def create(client: httpx.Client, model: str, count: int, resolution: str) -> str:
    body = {
        "image_count": count,
        "model": model,
        "resolution": resolution,
        "style": {"prompt": "usage"},
    }
    response = client.post("/v1/ai-image-generator", json=body)
    assert response.status_code == 200, response.text
    project_id: str = response.json()["id"]
    return project_id


class Scene:
    """Three projects on two models, the last flux-schnell one canceled (refunded); ``middle``
    is a moment between the first charge and the others."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.account: Account = server.account(tier="business", credits=10_000)
        self.other: Account = server.account(tier="business", credits=500)
        with server.client(self.account) as client, server.client(self.other) as other:
            self.flux = create(client, "flux-schnell", 2, "1k")  # 2 x 5 credits
            time.sleep(0.01)
            self.middle = datetime.now(UTC)
            time.sleep(0.01)
            self.zimage = create(client, "z-image-turbo", 3, "640px")  # 3 x 5
            self.canceled = create(client, "flux-schnell", 1, "2k")  # 1 x 10, refunded
            assert client.delete(f"/v1/image-projects/{self.canceled}").status_code == 204
            create(other, "seedream-v4", 1, "1k")  # another account's: never counted

    def usage(self, **params: Any) -> httpx.Response:
        with self.server.client(self.account) as client:
            return client.get("/v1/account/usage", params=params)


@pytest.fixture
def scene(server_factory: ServerFactory) -> Scene:
    return Scene(server_factory(workers=0))


def test_totals_per_model_and_entries(scene: Scene) -> None:
    response = scene.usage()
    assert response.status_code == 200, response.text
    usage = response.json()
    assert usage["account_id"] == scene.account.id
    assert usage["models"] == {
        "flux-schnell": {
            "projects": 2,
            "projects_refunded": 1,
            "images": 3,
            "credits_charged": 20,
            "credits_refunded": 10,
            "net": 10,
        },
        "z-image-turbo": {
            "projects": 1,
            "projects_refunded": 0,
            "images": 3,
            "credits_charged": 15,
            "credits_refunded": 0,
            "net": 15,
        },
    }
    assert usage["totals"] == {
        "entries": 5,
        "projects": 3,
        "images": 6,
        "credits_granted": 10_000,
        "credits_charged": 35,
        "credits_refunded": 10,
        "net": 25,
        "balance_change": 9_975,
    }
    with scene.server.client(scene.account) as client:
        assert client.get("/v1/account").json()["credits"] == 9_975
    entries = [
        (e["kind"], e["amount"], e["balance_after"], e["project_id"], e["model"])
        for e in usage["entries"]
    ]
    assert entries == [
        ("refund", 10, 9_975, scene.canceled, "flux-schnell"),
        ("charge", -10, 9_965, scene.canceled, "flux-schnell"),
        ("charge", -15, 9_975, scene.zimage, "z-image-turbo"),
        ("charge", -10, 9_990, scene.flux, "flux-schnell"),
        ("grant", 10_000, 10_000, None, None),
    ]
    assert usage["entries"][-1]["note"] == "opening balance"
    assert (usage["has_more"], usage["next_before"]) == (False, None)
    start = datetime.fromisoformat(usage["from"])
    end = datetime.fromisoformat(usage["to"])
    assert end - start == timedelta(days=30)
    assert abs((datetime.now(UTC) - end).total_seconds()) < 60


def test_range_bounds_dates_zones_and_naive_times(scene: Scene) -> None:
    def kinds(**params: Any) -> list[tuple[str, str | None]]:
        response = scene.usage(**params)
        assert response.status_code == 200, response.text
        return [(e["kind"], e["project_id"]) for e in response.json()["entries"]]

    before = [("charge", scene.flux), ("grant", None)]
    after = [
        ("refund", scene.canceled),
        ("charge", scene.canceled),
        ("charge", scene.zimage),
    ]
    middle = scene.middle
    assert kinds(to=middle.isoformat()) == before
    assert kinds(**{"from": middle.isoformat()}) == after
    # the same instant written in another zone, and without a zone (UTC)
    east = middle.astimezone(timezone(timedelta(hours=2))).isoformat()
    assert "+02:00" in east
    assert kinds(to=east) == before
    assert kinds(**{"from": middle.replace(tzinfo=None).isoformat()}) == after
    today = middle.date()
    assert kinds(**{"from": today.isoformat(), "to": (today + timedelta(days=1)).isoformat()}) == (
        after + before
    )
    # a range in the past holds nothing, totals included
    past = scene.usage(**{"from": "2020-01-01", "to": "2020-02-01"}).json()
    assert past["entries"] == []
    assert past["models"] == {}
    assert set(past["totals"].values()) == {0}
    assert (past["from"], past["to"]) == ("2020-01-01T00:00:00+00:00", "2020-02-01T00:00:00+00:00")
    only_to = scene.usage(to="2020-01-31").json()
    assert (only_to["from"], only_to["to"]) == (
        "2020-01-01T00:00:00+00:00",
        "2020-01-31T00:00:00+00:00",
    )
    # totals follow the range too: only the first charge and the grant before the middle
    early = scene.usage(to=middle.isoformat()).json()
    assert early["totals"]["credits_charged"] == 10
    assert early["models"]["flux-schnell"]["images"] == 2
    assert "z-image-turbo" not in early["models"]


def test_paging_lists_every_entry_once_with_totals_of_the_whole_range(scene: Scene) -> None:
    everything = scene.usage().json()
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 2}
    pages = 0
    while True:
        page = scene.usage(**params).json()
        pages += 1
        assert len(page["entries"]) <= 2
        assert page["totals"] == everything["totals"]
        assert page["models"] == everything["models"]
        seen += [e["id"] for e in page["entries"]]
        if not page["has_more"]:
            assert page["next_before"] is None
            break
        assert page["next_before"] == page["entries"][-1]["id"]
        params["before"] = page["next_before"]
    assert pages == 3
    assert seen == [e["id"] for e in everything["entries"]]
    assert len(seen) == 5


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"from": "yesterday"}, "from must be an ISO 8601"),
        ({"to": "2026-13-45"}, "to must be an ISO 8601"),
        ({"from": "2026-11-02", "to": "2026-11-01"}, "from (2026-11-02T00:00:00+00:00) must be"),
        ({"from": "2026-11-01", "to": "2026-11-01T00:00:00Z"}, "must be before to"),
        ({"from": "2999-01-01"}, "must be before to"),
        ({"to": "0001-01-02"}, "from"),
        ({"limit": 0}, "limit must be between 1 and 1000"),
        ({"limit": 1001}, "limit must be between 1 and 1000"),
        ({"limit": "many"}, "limit"),
        ({"before": 0}, "before"),
        ({"before": 2**70}, "before"),
    ],
)
def test_bad_parameters_are_400_naming_them(
    server: LiveServer, params: dict[str, Any], needle: str
) -> None:
    account = server.account()
    with server.client(account) as client:
        response = client.get("/v1/account/usage", params=params)
    assert response.status_code == 400, response.text
    assert needle in response.json()["message"]


def test_usage_needs_a_key(server: LiveServer) -> None:
    with server.client() as client:
        assert client.get("/v1/account/usage").status_code == 401


def without_upstream(report: dict[str, Any]) -> dict[str, Any]:
    """The operator's report as the account sees it: the operator also sees what vendors counted
    (nothing here: every project was rendered locally)."""
    for model in report["models"].values():
        assert model.pop("upstream") == {"input_tokens": 0, "output_tokens": 0, "images": 0}
    return report


def test_admin_and_cli_show_the_same_usage(scene: Scene) -> None:
    window = {
        "from": (scene.middle - timedelta(hours=1)).isoformat(),
        "to": (scene.middle + timedelta(hours=1)).isoformat(),
    }
    own = scene.usage(**window).json()
    with admin_client(scene.server) as admin:
        response = admin.get(f"/accounts/{scene.account.id}/usage", params=window)
        assert response.status_code == 200, response.text
        assert without_upstream(response.json()) == own
        paged = admin.get(f"/accounts/{scene.account.id}/usage", params=window | {"limit": 1})
        assert paged.json()["has_more"] is True
        other = admin.get(f"/accounts/{scene.other.id}/usage", params=window).json()
        assert list(other["models"]) == ["seedream-v4"]
        assert admin.get(f"/accounts/{scene.account.id}/usage?limit=0").status_code == 400
    data_dir = scene.server.settings.data_dir
    flags = ["--from", window["from"], "--to", window["to"]]
    assert without_upstream(as_json(data_dir, "accounts", "usage", scene.account.id, *flags)) == own
    text = darkroom(data_dir, "accounts", "usage", scene.account.id, *flags, "--limit", "2").stdout
    assert "flux-schnell" in text and "z-image-turbo" in text
    assert f"more: --before {own['entries'][1]['id']}" in text
    bad = darkroom(data_dir, "accounts", "usage", scene.account.id, "--from", "soon", check=False)
    assert bad.returncode == 1
    assert "from must be an ISO 8601" in bad.stderr


def test_sdk_and_client_cli_usage(scene: Scene) -> None:
    from darkroom import Client

    with Client(token=scene.account.key, base_url=scene.server.url) as client:
        usage = client.v1.account.usage()
        assert usage.models["flux-schnell"].credits_refunded == 10
        assert usage.models["z-image-turbo"].images == 3
        assert usage.totals["net"] == 25
        page = client.v1.account.usage(limit=2)
        assert len(page.entries) == 2 and page.has_more
        rest = client.v1.account.usage(limit=100, before=page.next_before)
        ids = [e.id for e in page.entries + rest.entries]
        assert len(ids) == len(set(ids)) == usage.totals["entries"]
        later = client.v1.account.usage(from_=scene.middle.isoformat())
        assert "flux-schnell" in later.models and later.models["flux-schnell"].projects == 1
    env = {
        **os.environ,
        "DARKROOM_API_KEY": scene.account.key,
        "DARKROOM_BASE_URL": scene.server.url,
    }
    command = [sys.executable, "-m", "darkroom.cli.main", "usage"]
    shown = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "refunded 10, net 25 credits" in shown.stdout
    assert "z-image-turbo" in shown.stdout
    as_data = subprocess.run(
        [*command, "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert json.loads(as_data.stdout)["models"]["flux-schnell"]["net"] == 10
    bad = subprocess.run(
        [*command, "--from", "yesterday"], env=env, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 10 and "from must be an ISO 8601 date" in bad.stderr
