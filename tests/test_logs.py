"""Log lines as ``darkroom serve`` configures them: JSON (or text) lines that carry the request id
from the request into its job, the ``x-request-id`` header, and what must never be logged."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from darkroom.observe import logs
from darkroom.settings import Settings
from tests.conftest import Account, LiveServer, ServerFactory
from tests.waiting import wait_until

PROMPT = "a zebra named Quillon-7731 reading tea leaves"
CREATE = "/v1/ai-image-generator"
BODY = {"image_count": 1, "resolution": "640px", "style": {"prompt": PROMPT}}

Line = dict[str, Any]


class Captured:
    """What the handler that ``logs.configure`` installed has written."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[Line]:
        """Every line, parsed: each one must be a JSON object."""
        parsed = [json.loads(line) for line in self.text.splitlines()]
        assert all(isinstance(line, dict) for line in parsed)
        return parsed

    def wait_for(self, *wanted: Callable[[Line], bool], timeout: float = 10) -> list[Line]:
        """The lines, once each predicate matches one of them (a job's last line and a request's
        access line may come a moment after the answer)."""

        def found() -> list[Line] | None:
            lines = self.lines()
            return lines if all(any(w(line) for line in lines) for w in wanted) else None

        return wait_until(found, lambda: f"log lines missing; got {self.lines()}", timeout=timeout)


Configure = Callable[..., Captured]


@pytest.fixture
def configure(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Configure]:
    """``logs.configure`` with the server's settings and ``overrides``, into a string; undone
    afterwards."""
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in ("", *logs.QUIET)}
    monkeypatch.setattr(logs, "_handler", None)
    monkeypatch.setattr(logs, "_log_prompts", False)
    installed: list[logging.Handler] = []

    def start(**overrides: Any) -> Captured:
        settings: Settings = server.settings.model_copy(update=overrides)
        stream = io.StringIO()
        installed.append(logs.configure(settings, stream))
        return Captured(stream)

    yield start
    for handler in installed:
        root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def create(server: LiveServer, account: Account, **headers: str) -> tuple[str, str]:
    """Create a project and wait for it to end; its id and the create's x-request-id."""
    with server.client(account) as http:
        created = http.post(CREATE, json=BODY, headers=headers)
        assert created.status_code == 200, created.text
        project_id = created.json()["id"]
        ended = http.get(f"/v1/image-projects/{project_id}", params={"wait": 30}).json()
    assert ended["status"] == "complete"
    return project_id, created.headers["x-request-id"]


def message(start: str, request_id: str) -> Callable[[Line], bool]:
    return lambda line: line["message"].startswith(start) and line["request_id"] == request_id


def test_json_lines_carry_the_request_id_from_the_request_into_its_job(
    server: LiveServer, account: Account, configure: Configure
) -> None:
    captured = configure(log_format="json")
    project_id, request_id = create(server, account)
    assert request_id.startswith("req_")
    lines = captured.wait_for(
        message(f"POST {CREATE} 200", request_id),
        message(f"project {project_id} queued", request_id),
        message(f"rendering {project_id}", request_id),
        message(f"project {project_id} complete in", request_id),
        # The long poll's own line, written once its answer is sent (the client may read the
        # answer first).
        lambda line: line.get("route") == "/v1/image-projects/{project_id}",
    )
    for line in lines:
        assert {"time", "level", "logger", "message", "request_id"} <= set(line)
    access = next(line for line in lines if line["message"].startswith(f"POST {CREATE}"))
    assert access["logger"] == "darkroom.access"
    assert (access["method"], access["route"], access["status"]) == ("POST", CREATE, 200)
    assert access["duration_ms"] >= 0
    queued = next(line for line in lines if line["logger"] == "darkroom.jobs")
    assert queued["project_id"] == project_id
    assert "prompt <hidden>" in queued["message"]
    poll = next(line for line in lines if line.get("route") == "/v1/image-projects/{project_id}")
    assert poll["project_id"] == project_id
    assert poll["request_id"] not in (None, request_id)  # a request of its own
    assert account.key not in captured.text
    assert "Bearer" not in captured.text
    assert PROMPT not in captured.text
    assert "Quillon" not in captured.text


def test_a_sane_incoming_request_id_is_used_and_a_bad_one_replaced(
    server: LiveServer, account: Account, configure: Configure
) -> None:
    captured = configure(log_format="json")
    project_id, request_id = create(server, account, **{"X-Request-Id": "trace-42.a_B"})
    assert request_id == "trace-42.a_B"
    captured.wait_for(message(f"project {project_id} complete", "trace-42.a_B"))
    with server.client(account) as http:
        for bad in ("has space", "x" * 65, "semi;colon", ""):
            answer = http.get("/v1/account", headers={"X-Request-Id": bad})
            assert answer.status_code == 200
            assert answer.headers["x-request-id"].startswith("req_")
        longest = "y" * 64  # what the projects' request_id column holds
        answer = http.get("/healthz", headers={"x-request-id": longest})
        assert answer.headers["x-request-id"] == longest


def test_errors_carry_the_request_id_too(server: LiveServer, account: Account) -> None:
    with server.client() as anonymous:
        refused = anonymous.post(CREATE, json=BODY)
        openai_refused = anonymous.post("/v1/images/generations", json={"prompt": "x"})
        unknown = anonymous.get("/no/such/path")
    with server.client(account) as http:
        invalid = http.post(CREATE, json={"image_count": 1})
        missing = http.get("/v1/image-projects/img_nosuchproject")
        wrong_method = http.put("/healthz")
    answers = [refused, openai_refused, unknown, invalid, missing, wrong_method]
    assert [a.status_code for a in answers] == [401, 401, 404, 400, 404, 405]
    assert refused.json()["message"]
    assert openai_refused.json()["error"]["code"] == "invalid_api_key"
    ids = [answer.headers["x-request-id"] for answer in answers]
    assert all(request_id.startswith("req_") for request_id in ids)
    assert len(set(ids)) == len(ids)


def test_prompts_are_logged_only_when_the_operator_turns_it_on(
    server: LiveServer, account: Account, configure: Configure
) -> None:
    captured = configure(log_format="json", log_prompts=True)
    project_id, request_id = create(server, account)
    lines = captured.wait_for(message(f"project {project_id} complete", request_id))
    with_prompt = [line for line in lines if PROMPT in json.dumps(line)]
    assert len(with_prompt) == 1
    assert with_prompt[0]["logger"] == "darkroom.jobs"
    assert with_prompt[0]["message"].endswith(f'prompt "{PROMPT}"')
    assert account.key not in captured.text


def test_text_lines_name_the_request_id(
    server: LiveServer, account: Account, configure: Configure
) -> None:
    captured = configure(log_format="text")
    project_id, request_id = create(server, account)
    wait_until(
        lambda: f"project {project_id} complete" in captured.text,
        lambda: captured.text,
        timeout=10,
    )
    lines = captured.text.splitlines()
    rendering = next(line for line in lines if f"rendering {project_id}" in line)
    assert f" INFO darkroom.runner [{request_id}]: rendering {project_id}" in rendering
    access = next(line for line in lines if f"POST {CREATE} 200" in line)
    assert f"darkroom.access [{request_id}]: POST {CREATE} 200 " in access
    assert PROMPT not in captured.text
    assert account.key not in captured.text


def test_query_strings_are_never_logged(
    server_factory: ServerFactory, configure: Configure
) -> None:
    server = server_factory(storage_links="proxy")  # darkroom's own signed links
    account = server.account()
    captured = configure(log_format="json")
    project_id, _ = create(server, account)
    with server.client(account) as http:
        url = http.get(f"/v1/image-projects/{project_id}").json()["downloads"][0]["url"]
    signature = httpx.URL(url).params["signature"]
    download = httpx.get(url)
    assert download.status_code == 200
    unknown = httpx.get(f"{server.url}/no/such/path", params={"token": "sekrit-0451"})
    lines = captured.wait_for(
        message("GET /downloads/{name} 200", download.headers["x-request-id"]),
        message("GET /no/such/path 404", unknown.headers["x-request-id"]),
    )
    assert lines
    assert signature not in captured.text
    assert "sekrit-0451" not in captured.text
