"""``GET /v1/image-projects/{id}?wait=SECONDS``: darkroom's long poll answers as soon as the
project ends (the published SDK never sends it, and polls as before)."""

from __future__ import annotations

import threading
import time
from typing import Any

from darkroom.engine.registry import Backends
from tests.backends import Slow
from tests.conftest import ServerFactory
from tests.waiting import wait_until

BODY = {"image_count": 1, "model": "flux-schnell", "resolution": "640px", "style": {"prompt": "x"}}


def test_long_poll_is_woken_by_the_completion(server_factory: ServerFactory) -> None:
    """The answer comes from the completion's signal, not from a look at the database (which
    would come only after poll_seconds, 30 s here). How fast: benchmarks/wait_overhead.py."""
    slow = Slow()
    server = server_factory(Backends([slow]), poll_seconds=30)
    account = server.account()
    with server.client(account) as http:
        project_id = http.post("/v1/ai-image-generator", json=BODY).json()["id"]
    assert slow.entered.wait(5)
    answer: dict[str, Any] = {}

    def long_poll() -> None:
        with server.client(account) as http:
            response = http.get(f"/v1/image-projects/{project_id}", params={"wait": 20})
        answer["body"] = response.json()

    poller = threading.Thread(target=long_poll)
    poller.start()
    wait_until(lambda: server.services.watch.waiting(project_id), "the long poll to wait")
    assert poller.is_alive()  # still waiting: the project is rendering
    slow.release.set()
    poller.join(30)
    # Complete, not rendering: the wait (20 s) ended before any look at the database (30 s)
    # could have seen the completion, so the completion's signal is what answered.
    assert answer["body"]["status"] == "complete"
    assert len(answer["body"]["downloads"]) == 1
    assert slow.finished_at is not None


def test_long_poll_gives_up_after_wait_seconds_with_the_current_status(
    server_factory: ServerFactory,
) -> None:
    slow = Slow()
    server = server_factory(Backends([slow]))
    account = server.account()
    try:
        with server.client(account) as http:
            project_id = http.post("/v1/ai-image-generator", json=BODY).json()["id"]
            assert slow.entered.wait(5)
            started = time.monotonic()
            # Within 5 s (else a timeout): the wait asked for, not the longest one.
            answer = http.get(f"/v1/image-projects/{project_id}", params={"wait": 0.3}, timeout=5)
            waited = time.monotonic() - started
    finally:
        slow.release.set()
    assert answer.json()["status"] == "rendering"
    assert waited >= 0.25  # it waited as asked


def test_long_poll_checks_its_input_and_the_owner(server_factory: ServerFactory) -> None:
    server = server_factory()
    owner, stranger = server.account(), server.account()
    with server.client(owner) as http:
        project_id = http.post("/v1/ai-image-generator", json=BODY).json()["id"]
        done = http.get(f"/v1/image-projects/{project_id}", params={"wait": 10}).json()
        too_long = http.get(f"/v1/image-projects/{project_id}", params={"wait": 61})
        not_a_number = http.get(f"/v1/image-projects/{project_id}", params={"wait": "soon"})
    with server.client(stranger) as http:
        theirs = http.get(f"/v1/image-projects/{project_id}", params={"wait": 1})
    assert done["status"] == "complete"
    assert too_long.status_code == 400 and "wait" in too_long.json()["message"]
    assert not_a_number.status_code == 400
    assert theirs.status_code == 404 and theirs.json() == {"message": "Not Found"}


def test_since_answers_at_the_next_status_change(server_factory: ServerFactory) -> None:
    slow = Slow()
    server = server_factory(Backends([slow]))
    account = server.account()
    try:
        with server.client(account) as http:
            project_id = http.post("/v1/ai-image-generator", json=BODY).json()["id"]
            assert slow.entered.wait(5)
            path = f"/v1/image-projects/{project_id}"
            # No longer queued: answered at once, not after the 10 s (else a timeout).
            moved = http.get(path, params={"wait": 10, "since": "queued"}, timeout=5).json()
            assert moved["status"] == "rendering"
            started = time.monotonic()
            same = http.get(path, params={"wait": 0.3, "since": "rendering"}).json()
            assert same["status"] == "rendering"
            assert time.monotonic() - started >= 0.25
            bad = http.get(path, params={"wait": 1, "since": "baking"})
            assert bad.status_code == 400
            assert "since" in bad.json()["message"]
    finally:
        slow.release.set()
