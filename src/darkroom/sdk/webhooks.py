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
    """The delivery is not genuine: no or bad signature, or a timestamp out of tolerance."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_webhook(
    secret: str,
    body: bytes | str,
    headers: Mapping[str, str],
    *,
    tolerance: float | None = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> dict[str, Any]:
    """The event (``{"type", "payload"}``) of a genuine delivery, or
    :class:`WebhookVerificationError`. ``body`` must be the raw bytes received, not re-encoded
    JSON. ``tolerance=None`` skips the timestamp check (e.g. for a stored delivery)."""
    raw = body.encode() if isinstance(body, str) else body
    lowered = {key.lower(): value for key, value in headers.items()}
    stamp = lowered.get(TIMESTAMP_HEADER, "")
    given = lowered.get(SIGNATURE_HEADER, "")
    if not stamp.isdigit() or not given:
        raise WebhookVerificationError(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    if tolerance is not None:
        age = (time.time() if now is None else now) - int(stamp)
        if abs(age) > tolerance:
            raise WebhookVerificationError(
                f"timestamp is {age:.0f} s away from now (tolerance {tolerance:g} s)"
            )
    if not hmac.compare_digest(signature(secret, int(stamp), raw), given.strip().lower()):
        raise WebhookVerificationError("signature does not match")
    try:
        event: dict[str, Any] = json.loads(raw)
    except ValueError:
        raise WebhookVerificationError("body is not JSON") from None
    return event
