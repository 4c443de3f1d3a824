"""Traces: FastAPI records a span for every request once an OpenTelemetry tracer provider exists.
No span may carry what authorizes a request: a signed link's signature (``url.query`` of
``GET /downloads/{name}`` and of an upload's ``PUT /v1/files/uploads/{name}``) or an API key;
the routes still get them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.conftest import ServerFactory
from tests.waiting import wait_until


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """A tracer provider exporting to memory, as the process's global one for this test only
    (OpenTelemetry lets a process set it once: the test puts the previous one back)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    yield exporter
    provider.shutdown()


def server_span(exporter: InMemorySpanExporter, route: str) -> dict[str, Any]:
    """The attributes of the request span of ``route``, once it has ended (a streamed answer's
    span ends after its client has read the last byte)."""

    def ended() -> list[dict[str, Any]]:
        return [
            dict(s.attributes or {})
            for s in exporter.get_finished_spans()
            if s.kind == trace.SpanKind.SERVER and (s.attributes or {}).get("http.route") == route
        ]

    found: list[dict[str, Any]] = wait_until(ended, f"the span of {route}", timeout=10)
    return found[-1]


def test_no_signed_link_or_key_in_a_span(
    spans: InMemorySpanExporter, server_factory: ServerFactory
) -> None:
    server = server_factory(storage_links="proxy")  # darkroom's own signed links, on S3 too
    account = server.account()
    with server.client(account) as client:
        created = client.post(
            "/v1/ai-image-generator", json={"image_count": 1, "style": {"prompt": "a lighthouse"}}
        )
        assert created.status_code == 200, created.text
    project = server.wait(account, created.json()["id"])
    link = project["downloads"][0]["url"]
    signature = parse_qs(urlsplit(link).query)["signature"][0]
    downloaded = httpx.get(link, timeout=30)
    assert downloaded.status_code == 200  # the route got the real signature
    assert downloaded.content.startswith(b"\x89PNG")

    # An upload URL (darkroom's own, signed the same way): the editor's input image.
    with server.client(account) as client:
        asked = client.post(
            "/v1/files/upload-urls", json={"items": [{"type": "image", "extension": "png"}]}
        )
        assert asked.status_code == 200, asked.text
    upload = asked.json()["items"][0]["upload_url"]
    upload_signature = parse_qs(urlsplit(upload).query)["signature"][0]
    put = httpx.put(upload, content=downloaded.content, timeout=30)
    assert put.status_code == 200, put.text  # the route got that one too

    download = server_span(spans, "/downloads/{name}")
    assert download["http.response.status_code"] == 200
    query = parse_qs(download["url.query"])
    assert query["signature"] == ["REDACTED"]
    assert query["expires"] == parse_qs(urlsplit(link).query)["expires"]  # not a secret
    uploaded = server_span(spans, "/v1/files/uploads/{name}")
    assert parse_qs(uploaded["url.query"])["signature"] == ["REDACTED"]
    assert server_span(spans, "/v1/ai-image-generator")["http.response.status_code"] == 200
    for span in spans.get_finished_spans():
        for name, value in (span.attributes or {}).items():
            text = str(value)
            assert signature not in text and upload_signature not in text, (span.name, name)
            assert account.key not in text, (span.name, name)
