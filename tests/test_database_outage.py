"""PostgreSQL stopped for 20 s under load, then started again: nothing is lost and nothing restarts.
And a PostgreSQL that stops answering without closing its connections: 503s at the deadline.

A PostgreSQL server of this test's own (the session's one is shared) carries a darkroom server with
two workers and its webhook sender; clients keep creating projects (each with an Idempotency-Key,
retried after Retry-After on a 503, as a careful client does) and reading them while the database
is stopped with ``pg_ctl stop -m fast`` and, 20 s later, started on the same port and data.

During the outage every API answer is a 503 with Retry-After (``/healthz`` answers 200 without the
database), none is a 500 and none takes more than a few seconds. Once the database is back, the
same server and workers carry on: every project completes, each charged once (the balance is the
grant less the charges of the projects, as the ledger says), every completion is delivered to the
webhook receiver, and no create was lost or made twice. The figures (503s, slowest answer, time to
recover) are printed: run with ``-s`` to see them.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import make_url, select

from darkroom.engine.registry import Backends
from darkroom.store.tables import projects
from tests.backends import Slow
from tests.blackhole_proxy import BlackholeProxy
from tests.conftest import ON_POSTGRES, Account, Databases, LiveServer, ServerFactory
from tests.postgres import PostgresServer
from tests.test_database_busy import ledger_sum
from tests.waiting import wait_until
from tests.webhook_receiver import Receiver

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not ON_POSTGRES, reason="stops a PostgreSQL server: the postgres run"),
]

BODY = {"image_count": 1, "model": "flux-schnell", "resolution": "640px", "style": {"prompt": "x"}}
OUTAGE_SECONDS = 20.0
CLIENTS = 4  # threads creating projects (and reading each back)
# The clients' timeout: the request's patience (5 s) plus a busy 2-core machine's margin. An
# answer that takes longer is recorded as none (status 0).
SLOWEST_ANSWER = 8.0
RECOVERY_DEADLINE = 30.0  # seconds after the database is back for every project to complete


@dataclass
class Answer:
    method: str
    path: str
    started: float
    ended: float
    status: int
    retry_after: str | None
    body: str

    @property
    def took(self) -> float:
        return self.ended - self.started


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


class Load:
    """Clients creating and reading projects until told to stop; every answer is recorded."""

    def __init__(self, server: LiveServer, account: Account) -> None:
        self.server = server
        self.account = account
        self.answers: list[Answer] = []
        self.created: dict[str, str] = {}  # Idempotency-Key -> project id
        self.unfinished: list[str] = []  # keys given up on (should stay empty)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client) for _ in range(CLIENTS)]
        self.threads.append(threading.Thread(target=self._health))

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in self.threads)

    def _call(self, http: httpx.Client, method: str, path: str, **kwargs: Any) -> Answer:
        started = time.monotonic()
        try:
            response = http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            answer = Answer(method, path, started, time.monotonic(), 0, None, "no answer")
        else:
            answer = Answer(
                method,
                path,
                started,
                time.monotonic(),
                response.status_code,
                response.headers.get("retry-after"),
                response.text[:300],
            )
        with self.lock:
            self.answers.append(answer)
        return answer

    def _client(self) -> None:
        auth = {"Authorization": f"Bearer {self.account.key}"}
        with httpx.Client(base_url=self.server.url, headers=auth, timeout=SLOWEST_ANSWER) as http:
            while not self.stop.is_set():
                key = uuid.uuid4().hex
                project_id = self._create(http, key)
                if project_id is None:
                    continue
                self._call(http, "GET", f"/v1/image-projects/{project_id}")

    def _create(self, http: httpx.Client, key: str) -> str | None:
        """One project, tried again with the same key after each 503 (for up to a minute)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            answer = self._call(
                http, "POST", "/v1/ai-image-generator", json=BODY, headers={"Idempotency-Key": key}
            )
            if answer.status == 200:
                project_id: str = httpx.Response(200, text=answer.body).json()["id"]
                with self.lock:
                    self.created[key] = project_id
                return project_id
            if answer.status != 503:
                break
            time.sleep(float(answer.retry_after or 1))
        with self.lock:
            self.unfinished.append(key)
        return None

    def _health(self) -> None:
        with httpx.Client(base_url=self.server.url, timeout=60) as http:
            while not self.stop.is_set():
                self._call(http, "GET", "/healthz")
                time.sleep(0.2)

    def successes_since(self, moment: float) -> list[Answer]:
        with self.lock:
            return [
                a
                for a in self.answers
                if a.method == "POST" and a.status == 200 and a.started >= moment
            ]


def project_rows(server: LiveServer, account: Account) -> list[Any]:
    query = select(projects.c.id, projects.c.status, projects.c.credits_charged).where(
        projects.c.account_id == account.id
    )
    return server.services.db.query(lambda conn: list(conn.execute(query)))


def test_postgresql_stopped_for_20_seconds_under_load_loses_nothing_and_restarts_nothing(
    own_postgres: PostgresServer, server_factory: ServerFactory
) -> None:
    server = server_factory(
        Backends([Slow(delay=0.3)]),  # renders in flight when the database goes
        database_url=own_postgres.create_database(),
        workers=2,
    )
    services, running = server.services, server.node
    node = running.id
    grant = 1_000_000
    account = server.account(credits=grant)
    receiver = Receiver()
    try:
        with server.client(account) as http:
            hook = http.post("/v1/webhooks", json={"url": receiver.url})
        assert hook.status_code == 201, hook.text
        receiver.secret = hook.json()["secret"]
        load = Load(server, account)
        sync_account = server.account(credits=1000, name="sync")
        sync_answers: list[httpx.Response] = []

        def sync_generate() -> None:
            with server.client(sync_account) as http:
                wait = OUTAGE_SECONDS + RECOVERY_DEADLINE
                answer = http.post("/v1/images/generations", json={"prompt": "x"}, timeout=wait)
                sync_answers.append(answer)

        def sync_charged() -> bool:
            return server.balance(sync_account) < 1000

        sync = threading.Thread(target=sync_generate)
        load.start()
        try:
            wait_until(
                lambda: len(load.created) >= 8, "8 projects created before the outage", timeout=20
            )
            # An OpenAI-dialect request, charged and waiting for its images (queued behind the
            # load) when the database goes: it waits the outage out and gets them, rather than
            # a 503 that its SDK would answer by creating, and paying for, the images again.
            sync.start()
            wait_until(
                lambda: sync_charged(), "the synchronous request's project charged", timeout=10
            )

            own_postgres.halt()
            down_at = time.monotonic()
            time.sleep(OUTAGE_SECONDS)  # the outage itself: its length is the point
            up_started = time.monotonic()
            own_postgres.resume()
            up_at = time.monotonic()

            # Load goes on until creates succeed again, and a little after.
            wait_until(
                lambda: load.successes_since(up_at),
                "a create after the database is back",
                timeout=15,
            )
            first_create = min(a.ended for a in load.successes_since(up_at)) - up_at
            wait_until(
                lambda: len(load.successes_since(up_at)) >= 4, "4 creates after it", timeout=15
            )
        finally:
            load.join()
        assert not load.unfinished, f"creates given up on: {load.unfinished}"

        # Every project completes, with no restart of the server, its workers or its sender.
        def all_complete() -> bool:
            return all(row.status == "complete" for row in project_rows(server, account))

        wait_until(all_complete, "every project complete", timeout=RECOVERY_DEADLINE)
        all_done = time.monotonic() - up_at
        rows = project_rows(server, account)
        ids = {row.id for row in rows}
        # No create lost, none made twice: one project per Idempotency-Key answered 200.
        assert ids == set(load.created.values())
        assert len(rows) == len(load.created)
        # Each charged once: the balance is the grant less the charges, as the ledger says.
        charged = sum(row.credits_charged for row in rows)
        assert server.balance(account) == grant - charged == ledger_sum(server, account)
        # Every completion reached the webhook receiver, once the sender could read them.
        wait_until(
            lambda: ids <= {r.event["payload"]["id"] for r in receiver.accepted("image.completed")},
            "every completion delivered",
            timeout=RECOVERY_DEADLINE,
        )
        delivered = {r.event["payload"]["id"] for r in receiver.accepted("image.completed")}
        assert ids <= delivered
        sync.join(timeout=RECOVERY_DEADLINE)
        assert [a.status_code for a in sync_answers] == [200], [a.text for a in sync_answers]
        images = sync_answers[0].json()["data"]
        assert len(images) == 1 and (images[0].get("b64_json") or images[0].get("url"))
        sync_rows = project_rows(server, sync_account)
        assert [row.status for row in sync_rows] == ["complete"]
        assert server.balance(sync_account) == 1000 - sync_rows[0].credits_charged
        assert server.thread.is_alive()
        assert services is server.services and running is server.node and running.id == node
        assert running.runner.running and running.sender.running and running.heartbeat.running
    finally:
        receiver.close()

    # During the outage: 503 with Retry-After (or /healthz's 200), never a 500, never a hang.
    during = [a for a in load.answers if a.started >= down_at and a.ended <= up_started]
    for answer in during:
        if answer.path == "/healthz":
            assert answer.status == 200
        else:
            assert answer.status == 503, answer
            assert answer.retry_after is not None and int(answer.retry_after) >= 1, answer
            assert "unavailable" in answer.body, answer
    refused = [a for a in during if a.status == 503]
    assert len(refused) >= CLIENTS, "the clients should have met the outage"
    assert not [a for a in load.answers if a.status >= 500 and a.status != 503]
    unanswered = [a for a in load.answers if a.status == 0]
    assert not unanswered, f"no answer within {SLOWEST_ANSWER:g} s: {unanswered[:3]}"
    slowest = max(a.took for a in load.answers if a.path != "/healthz")
    print(
        f"\noutage {OUTAGE_SECONDS:g} s: {len(during)} answers during it, {len(refused)} of them "
        f"503 with Retry-After, 0 500s; slowest answer {slowest:.2f} s "
        f"(healthz slowest {max(a.took for a in during if a.path == '/healthz'):.3f} s); "
        f"database back -> first create {first_create:.2f} s, -> all {len(rows)} projects "
        f"complete {all_done:.2f} s"
    )


@pytest.fixture
def blackhole(databases: Databases, tmp_path: Path) -> Iterator[tuple[BlackholeProxy, str]]:
    """A proxy that can black-hole the path to this test's PostgreSQL database, and the URL of
    that database through it (closed after the servers on it: it is set up before them)."""
    direct = make_url(databases.url(tmp_path / "silent"))
    proxy = BlackholeProxy(direct.host or "127.0.0.1", direct.port or 5432)
    try:
        yield proxy, direct.set(port=proxy.port).render_as_string(hide_password=False)
    finally:
        proxy.close()


def test_a_database_that_stops_answering_gets_503s_at_the_deadline_and_loses_nothing(
    blackhole: tuple[BlackholeProxy, str], server_factory: ServerFactory
) -> None:
    """The path to PostgreSQL stops forwarding without closing (a frozen server, a network that
    drops packets): requests on the node's open pooled connections, which no timeout of the
    server's can end, are answered 503 with Retry-After at their deadline (1 s here), in each
    dialect's shape; the connections they were stuck on are closed by the node, not kept in its
    pool; nothing they started commits when the bytes finally arrive. Once forwarding resumes
    the same node serves again, and a create retried with its Idempotency-Key is made once."""
    proxy, url = blackhole
    server = server_factory(workers=0, database_url=url, database_request_seconds=1.0)
    grant = 1_000
    account = server.account(credits=grant)
    auth = {"Authorization": f"Bearer {account.key}"}
    key = {"Idempotency-Key": uuid.uuid4().hex}

    took: list[float] = []

    def call(method: str, path: str, body: dict[str, Any] | None = None, **headers: str) -> Any:
        started = time.monotonic()
        with httpx.Client(base_url=server.url, headers=auth, timeout=60) as http:
            response = http.request(method, path, json=body, headers=headers)
        took.append(time.monotonic() - started)
        return response

    requests: list[tuple[str, str, dict[str, Any] | None, dict[str, str]]] = [
        ("GET", "/v1/account", None, {}),
        ("GET", "/v1/image-projects", None, {}),
        ("POST", "/v1/ai-image-generator", BODY, key),
        ("POST", "/v1/images/generations", {"prompt": "x", "size": "256x256"}, {}),
    ]
    assert call("GET", "/v1/account").status_code == 200  # the pool's connections are open
    proxy.hold()
    took.clear()
    try:
        with ThreadPoolExecutor(len(requests)) as pool:
            answers = list(pool.map(lambda r: call(r[0], r[1], r[2], **r[3]), requests))
        for (method, path, _, _), answer in zip(requests, answers, strict=True):
            assert answer.status_code == 503, (method, path, answer.text)
            assert int(answer.headers["retry-after"]) >= 1, (method, path)
            message = answer.json()["error"]["message"] if "images" in path else answer.json()
            assert "unavailable" in str(message), (method, path, answer.text)
        # The node closed the connections its requests were stuck on (a half-read reply must
        # never be handed to the next request), while the path still held everything.
        wait_until(lambda: proxy.closed_by_clients >= 1, "the stuck connections closed", timeout=10)
        slowest = max(took)
    finally:
        proxy.resume()
    resumed = time.monotonic()

    def serves() -> bool:
        return call("GET", "/v1/account").status_code == 200

    wait_until(serves, "the node to serve again", timeout=30)
    serving = time.monotonic() - resumed
    retried = call("POST", "/v1/ai-image-generator", BODY, **key)
    assert retried.status_code == 200, retried.text
    # Nothing of what was given up on committed once its bytes got through: one project (the
    # retried create, made once), charged once, as the ledger says.
    rows = project_rows(server, account)
    assert [row.id for row in rows] == [retried.json()["id"]]
    assert server.balance(account) == grant - rows[0].credits_charged == ledger_sum(server, account)
    assert call("GET", f"/v1/image-projects/{rows[0].id}").status_code == 200
    print(
        f"\nblack-holed database: {len(requests)} requests answered 503 within {slowest:.2f} s "
        f"(patience 1 s), {proxy.closed_by_clients} stuck connection(s) closed by the node "
        "while held; "
        f"forwarding back -> serving again in {serving:.2f} s"
    )
