"""Webhook signatures, Magic Hour's scheme: ``magic-hour-event-signature`` is the lowercase hex
HMAC-SHA256, keyed with the endpoint's secret, of ``"{timestamp}.{raw_body}"``, where the
timestamp (Unix seconds) is the ``magic-hour-event-timestamp`` header. ``webhook-id`` names the
delivery and is the same on every retry of it, so a receiver can drop duplicates.

The server signs with :func:`signature`; a receiver checks with :func:`verify_webhook`::

    event = verify_webhook(secret, request.body, request.headers)  # raises if forged or stale
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

SIGNATURE_HEADER = "magic-hour-event-signature"
TIMESTAMP_HEADER = "magic-hour-event-timestamp"
ID_HEADER = "webhook-id"

# A signed delivery older (or newer) than this is refused by default, so that a captured one
# cannot be replayed later.
DEFAULT_TOLERANCE_SECONDS = 300


class WebhookVerificationError(ValueError):
    """The delivery is not genuine: no or bad signature, or a timestamp out of tolerance; or
    the headers or body are malformed (whatever their bytes, this is the one error raised)."""


# A Unix time in seconds has 10 digits until the year 2286; more is malformed.
_MAX_TIMESTAMP_DIGITS = 12


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_webhook(
    secret: str,
    body: bytes | str,
    headers: Mapping[str, str] | Mapping[bytes, bytes],
    *,
    tolerance: float | None = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> dict[str, Any]:
    """The event (``{"type", "payload"}``) of a genuine delivery, or
    :class:`WebhookVerificationError`, never another error, however malformed the headers
    (``str`` or ``bytes`` keys and values) or the body. ``body`` must be the raw bytes
    received, not re-encoded JSON. ``tolerance=None`` skips the timestamp check (e.g. for a
    stored delivery)."""
    raw = _raw(body)
    fields = _headers(headers)
    stamp = fields.get(TIMESTAMP_HEADER, "").strip()
    given = fields.get(SIGNATURE_HEADER, "").strip().lower()
    if not stamp or not given:
        raise WebhookVerificationError(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    # isdigit() alone takes "²" and other Unicode digits that int() refuses.
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= _MAX_TIMESTAMP_DIGITS):
        raise WebhookVerificationError(f"{TIMESTAMP_HEADER} is not a Unix time in seconds")
    if tolerance is not None:
        age = (time.time() if now is None else now) - int(stamp)
        if not abs(age) <= tolerance:
            raise WebhookVerificationError(
                f"timestamp is {age:.0f} s away from now (tolerance {tolerance:g} s)"
            )
    expected = signature(secret, int(stamp), raw).encode()
    if not (given.isascii() and hmac.compare_digest(expected, given.encode())):
        raise WebhookVerificationError("signature does not match")
    try:
        event = json.loads(raw)
    except (ValueError, RecursionError):
        raise WebhookVerificationError("body is not JSON") from None
    if not isinstance(event, dict):
        raise WebhookVerificationError("body is not a JSON object")
    return event


def _raw(body: object) -> bytes:
    if isinstance(body, str):
        try:
            return body.encode()
        except UnicodeError:
            raise WebhookVerificationError("body is not valid text") from None
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    raise WebhookVerificationError("body must be the raw bytes received")


def _headers(headers: object) -> dict[str, str]:
    """The headers with lowercase names, as text; bytes read as Latin-1 (as HTTP does)."""
    try:
        items = list(headers.items())  # type: ignore[attr-defined]
    except Exception:
        raise WebhookVerificationError("headers must be a mapping of names to values") from None
    fields: dict[str, str] = {}
    for key, value in items:
        name, text = _text(key), _text(value)
        if name is None or text is None:
            raise WebhookVerificationError("headers must be a mapping of names to values")
        fields[name.lower()] = text
    return fields


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    return None
