"""schemathesis against the server's own ``/openapi.json``: every route the document lists, with
data it generates from the document (valid and invalid, randomized with a fixed seed), checked
by all of schemathesis's checks: no server error, every status and content type documented,
every body matching its schema, invalid data refused, valid data accepted, ``Allow`` on 405.

Bounded: a fixed number of examples per operation; the waiting routes are kept short by the
settings (the OpenAI dialect's wait) and the document (``wait`` at most 60 s, never drawn large
here: the projects render in milliseconds on the preview backend).
"""

from __future__ import annotations

import time
from typing import Any

import schemathesis
from schemathesis.engine import Status, events, from_schema

from tests.conftest import ServerFactory

SEED = 16
MAX_EXAMPLES = 6

# Where "valid data is accepted" cannot hold, because the server refuses a schema-valid request
# for what JSON Schema cannot say: state (an Idempotency-Key reused for another body, a `before`
# naming no project of the caller's), the outside world (a webhook host that does not resolve,
# an image URL not fetched), content (base64 that is not an image, a mask without an image).
# Every other check still runs on these operations; the answer there is a 400/422 that the
# document lists.
STATEFUL_REFUSALS = [
    "^/v1/images/",
    "^/api/images/",
    "^/v1/ai-image-generator$",
    "^/v1/ai-image-editor$",  # an upload or a URL that exists
    "^/v1/files/uploads/",  # a signature of the server's
    "^/v1/image-projects$",
    "^/v1/account/usage$",
    "^/admin/v1/accounts/[^/]+/usage$",
    "^/v1/webhooks$",
]


def config(url: str, key: str) -> schemathesis.Config:
    operations = "\n".join(
        f"""
[[operations]]
include-path-regex = '{pattern}'
checks.positive_data_acceptance.enabled = false
"""
        for pattern in STATEFUL_REFUSALS
    )
    return schemathesis.Config.from_str(
        f"""
seed = {SEED}
base-url = "{url}"
workers = 1
request-timeout = 20
headers = {{ Authorization = "Bearer {key}" }}
generation.max-examples = {MAX_EXAMPLES}
generation.database = "none"
checks.enabled = true
{operations}
"""
    )


def answer(recorder: Any, case_id: str) -> str:
    """The request and the answer of a case, briefly."""
    interaction = recorder.interactions.get(case_id)
    if interaction is None or interaction.response is None:
        return "no answer"
    request = interaction.request
    body = (interaction.response.content or b"")[:300].decode(errors="replace")
    return f"{request.method} {request.uri} -> {interaction.response.status_code} {body}"


def failures(url: str, key: str, exclude: str | None = None) -> tuple[list[str], int]:
    """Each failure found (operation, check, what), and how many cases ran."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=config(url, key))
    if exclude is not None:
        schema = schema.exclude(path_regex=exclude)
    else:
        schema = schema.include(path_regex="^/admin/")
    found: list[str] = []
    cases = 0
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            cases += len(event.recorder.cases)
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        found.append(
                            f"{event.recorder.label}: {check.name}: {failure.title}: "
                            f"{answer(event.recorder, case_id)}"
                        )
        elif isinstance(event, events.NonFatalError):
            found.append(f"{event.label}: error: {event.info.title}")
        elif isinstance(event, events.FatalError):
            found.append(f"fatal: {event.exception!r}")
    return sorted(set(found)), cases


def test_the_server_answers_as_its_openapi_document_says(server_factory: ServerFactory) -> None:
    server = server_factory(admin_token="conformance-admin-token", sync_timeout_seconds=5.0)
    account = server.account(tier="business", credits=100_000_000)
    started = time.monotonic()
    found, cases = failures(server.url, account.key, exclude="^/admin/")
    admin, admin_cases = failures(server.url, "conformance-admin-token")
    elapsed = time.monotonic() - started
    assert found + admin == [], "\n".join(found + admin)
    assert cases + admin_cases > 300, (cases, admin_cases)  # the run really ran
    print(f"schemathesis: {cases + admin_cases} cases in {elapsed:.0f} s")


def test_the_document_lists_the_errors_of_each_route(server_factory: ServerFactory) -> None:
    server = server_factory()
    with server.client() as client:
        document: dict[str, Any] = client.get("/openapi.json").json()
    paths = document["paths"]
    create = paths["/v1/ai-image-generator"]["post"]
    assert set(create["responses"]) >= {"200", "400", "401", "402", "403", "413", "422", "429"}
    assert create["responses"]["503"]["headers"]["Retry-After"]["schema"]["type"] == "integer"
    prompt = create["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert prompt["style"]["properties"]["prompt"]["minLength"] == 1
    generation = paths["/v1/images/generations"]["post"]["responses"]
    assert generation["400"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "OpenAIError"
    )
    assert "HTTPValidationError" not in str(document)
    with server.client() as client:
        allow = client.options("/v1/image-projects/x").headers["allow"]
    assert set(allow.split(", ")) >= {"GET", "DELETE"}
