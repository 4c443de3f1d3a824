"""``darkroom.verify_webhook`` answers every malformed delivery with
:class:`WebhookVerificationError`, never ``TypeError``/``ValueError``/``OverflowError``, so a
receiver that catches that one error to answer 400 cannot be made to crash (a 500) by a forger."""

from __future__ import annotations

import time
from typing import Any

import pytest

from darkroom import WebhookVerificationError, verify_webhook
from darkroom.sdk.webhooks import signature

SECRET = "whsec_test"
BODY = b'{"type":"image.completed","payload":{"id":"img_1"}}'
NOW = 1_800_000_000
GOOD = signature(SECRET, NOW, BODY)
STAMP, SIG = "magic-hour-event-timestamp", "magic-hour-event-signature"

MALFORMED: list[tuple[str, Any, Any]] = [
    ("no headers", {}, BODY),
    ("empty signature", {STAMP: str(NOW), SIG: ""}, BODY),
    ("non-ASCII signature", {STAMP: str(NOW), SIG: "é" * 64}, BODY),
    ("signature with a NUL", {STAMP: str(NOW), SIG: GOOD[:-1] + "\x00"}, BODY),
    ("superscript-two timestamp", {STAMP: "²", SIG: GOOD}, BODY),
    ("Arabic-Indic digits", {STAMP: "١٨٠٠٠٠٠٠٠٠", SIG: GOOD}, BODY),
    ("negative timestamp", {STAMP: "-1", SIG: GOOD}, BODY),
    ("fractional timestamp", {STAMP: "1800000000.5", SIG: GOOD}, BODY),
    ("huge timestamp", {STAMP: "9" * 5000, SIG: GOOD}, BODY),
    ("400-digit timestamp", {STAMP: "1" + "0" * 400, SIG: GOOD}, BODY),
    (
        "bytes values, bad signature",
        {STAMP.encode(): str(NOW).encode(), SIG.encode(): b"\xff"},
        BODY,
    ),
    ("bytes timestamp of non-digits", {STAMP.encode(): b"\xb2", SIG.encode(): GOOD.encode()}, BODY),
    ("None values", {STAMP: None, SIG: None}, BODY),
    ("integer values", {STAMP: NOW, SIG: 12}, BODY),
    ("a list, not a mapping", [(STAMP, str(NOW)), (SIG, GOOD)], BODY),
    ("None headers", None, BODY),
    ("huge signature", {STAMP: str(NOW), SIG: "a" * 1_000_000}, BODY),
    ("body with a lone surrogate", {STAMP: str(NOW), SIG: GOOD}, "\udc80"),
    ("body of the wrong type", {STAMP: str(NOW), SIG: GOOD}, 42),
    ("body None", {STAMP: str(NOW), SIG: GOOD}, None),
]


@pytest.mark.parametrize(
    ("headers", "body"), [(h, b) for _, h, b in MALFORMED], ids=[n for n, _, _ in MALFORMED]
)
def test_malformed_deliveries_raise_the_verification_error(headers: Any, body: Any) -> None:
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, body, headers, now=NOW)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, body, headers, tolerance=None)


def test_signed_but_not_a_json_object() -> None:
    for body in (b"\xff\xfe", b"[1, 2]", b"[" * 100_000 + b"]" * 100_000):
        headers = {STAMP: str(NOW), SIG: signature(SECRET, NOW, body)}
        with pytest.raises(WebhookVerificationError):
            verify_webhook(SECRET, body, headers, now=NOW)


def test_genuine_deliveries_in_every_accepted_shape() -> None:
    event = {"type": "image.completed", "payload": {"id": "img_1"}}
    shapes: list[tuple[Any, Any]] = [
        ({STAMP: str(NOW), SIG: GOOD}, BODY),
        ({STAMP.upper(): f" {NOW} ", SIG.title(): GOOD.upper()}, BODY),  # names, case, spaces
        ({STAMP.encode(): str(NOW).encode(), SIG.encode(): GOOD.encode()}, BODY),  # raw ASGI
        ({STAMP: str(NOW), SIG: GOOD}, BODY.decode()),
        ({STAMP: str(NOW), SIG: GOOD}, bytearray(BODY)),
    ]
    for headers, body in shapes:
        assert verify_webhook(SECRET, body, headers, now=NOW) == event
    now = int(time.time())
    fresh = {STAMP: str(now), SIG: signature(SECRET, now, BODY)}
    assert verify_webhook(SECRET, BODY, fresh) == event
