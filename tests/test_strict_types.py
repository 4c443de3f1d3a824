"""JSON types are strict in both dialects: a boolean is not a number, a number is not a string,
a float is not an integer. A value of the wrong type is a 400 naming the field, and nothing is
charged. Multipart form fields (the OpenAI edit) must spell their type exactly."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import func, select

from darkroom.store.tables import projects
from tests.conftest import LiveServer

# 2.0 is an integer (JSON Schema says so, and the document is JSON Schema); 1.5 is not.
NOT_NUMBERS: list[Any] = [True, False, "1", 1.5, "1.0", {}, [], [1]]
NOT_STRINGS: list[Any] = [True, 1, 1.5, {}, [], ["a"]]


def project_count(server: LiveServer) -> int:
    with server.services.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(projects)).scalar_one())


def set_path(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``body`` with ``a.b`` set to ``value``."""
    copy: dict[str, Any] = {
        key: dict(item) if isinstance(item, dict) else item for key, item in body.items()
    }
    *parents, last = path.split(".")
    node = copy
    for part in parents:
        node = node[part]
    node[last] = value
    return copy


def refusals(
    server: LiveServer, route: str, good: dict[str, Any], cases: list[tuple[str, Any]]
) -> list[str]:
    """Send ``good`` with each (field, value) of ``cases``; what went wrong, if anything: a
    request taken, a message not naming its field, or a credit spent."""
    account = server.account(credits=10_000)
    problems = []
    with server.client(account) as client:
        for field, value in cases:
            response = client.post(route, json=set_path(good, field, value))
            body = response.json()
            message = body["message"] if "message" in body else body["error"]["message"]
            if response.status_code not in (400, 422):
                problems.append(f"{field}={value!r}: {response.status_code} {message}")
            elif not message.startswith(f"{field}:"):
                problems.append(f"{field}={value!r}: the message does not name it: {message}")
            if "error" in body and body["error"]["param"] != field:
                problems.append(f"{field}={value!r}: param is {body['error']['param']!r}")
    assert server.balance(account) == 10_000
    assert project_count(server) == 0
    return problems


def test_magic_hour_fields_refuse_every_other_json_type(server: LiveServer) -> None:
    good = {"image_count": 1, "style": {"prompt": "a red kite"}, "aspect_ratio": "1:1"}
    numbers = ["image_count", "seed"]
    strings = ["style.prompt", "style.tool", "model", "aspect_ratio", "resolution", "name"]
    cases = [(field, value) for field in numbers for value in NOT_NUMBERS]
    cases += [(field, value) for field in strings for value in NOT_STRINGS]
    cases += [("image_count", None), ("style.prompt", None), ("style", "a red kite")]
    assert refusals(server, "/v1/ai-image-generator", good, cases) == []


def test_openai_generation_fields_refuse_every_other_json_type(server: LiveServer) -> None:
    good = {"prompt": "a red kite", "size": "256x256", "response_format": "b64_json"}
    numbers = ["n", "seed", "output_compression"]
    strings = ["prompt", "model", "size", "quality", "style", "user", "tool"]
    cases = [(field, value) for field in numbers for value in NOT_NUMBERS]
    cases += [(field, value) for field in strings for value in NOT_STRINGS]
    cases += [("prompt", None), ("stream", 1), ("stream", "true"), ("response_format", 1)]
    assert refusals(server, "/v1/images/generations", good, cases) == []


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("n", "true"),
        ("n", "2.0"),
        ("n", " 2"),
        ("n", "1e1"),
        ("n", "two"),
        ("seed", "1.5"),
        ("output_compression", "false"),
        ("stream", "1"),
        ("stream", "yes"),
    ],
)
def test_openai_edit_form_fields_must_spell_their_type(
    server: LiveServer, field: str, text: str
) -> None:
    account = server.account(credits=10_000)
    form = {"prompt": "a red kite", "size": "256x256", "model": "flux-schnell", field: text}
    with server.client(account) as client:
        response = client.post(
            "/v1/images/edits", data=form, files={"image": ("a.png", png(), "image/png")}
        )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == field
    assert error["message"].startswith(f"{field}:")
    assert server.balance(account) == 10_000
    assert project_count(server) == 0


def test_openai_edit_form_reads_well_spelt_fields(server: LiveServer) -> None:
    account = server.account(credits=10_000)
    form = {
        "prompt": "a red kite",
        "size": "256x256",
        "model": "flux-schnell",
        "n": "2",
        "seed": "7",
        "stream": "false",
        "response_format": "b64_json",
        "user": "",  # the openai package sends None as an empty field: absent
    }
    with httpx.Client(base_url=server.url, timeout=60) as client:
        response = client.post(
            "/v1/images/edits",
            data=form,
            files={"image": ("a.png", png(), "image/png")},
            headers={"Authorization": f"Bearer {account.key}"},
        )
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 2
    assert response.json()["darkroom"]["seed"] == 7
