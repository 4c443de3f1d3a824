"""Signed, expiring links: HMAC-SHA256 over the file name and the expiry time. Download links
(``/downloads/<name>``) and upload URLs (``PUT /v1/files/uploads/<name>``) are signed under keys
derived apart, so that neither kind of signature can stand in for the other.

A link works without an API key until it expires; changing any part of it breaks the signature.
Links are signed with the current secret; those signed with a previous one (the server's secret
was rotated, ``DARKROOM_PREVIOUS_SECRET_KEYS``) keep working until they expire.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote, urlencode

from darkroom.storage.permissions import make_dirs, write_new

DOWNLOAD_PATH = "/downloads"
UPLOAD_PATH = "/v1/files/uploads"


class URLSigner:
    def __init__(
        self, secret: bytes, base_url: str, previous: Sequence[bytes] = (), *, path: str = ""
    ) -> None:
        self.path = path or DOWNLOAD_PATH
        self.secret = _derived(secret, self.path)
        self.previous = tuple(_derived(key, self.path) for key in previous)
        self.base_url = base_url.rstrip("/")

    def sign(self, name: str, expires: int) -> str:
        query = urlencode({"expires": expires, "signature": self._mac(name, expires)})
        return f"{self.base_url}{self.path}/{quote(name)}?{query}"

    def verify(self, name: str, expires: str, signature: str, now: float | None = None) -> bool:
        """Whether the link is genuine and not expired (by ``now``, Unix seconds; default: this
        node's clock)."""
        if not (expires.isascii() and expires.isdigit()) or len(expires) > 12:
            return False
        given = signature.encode()
        good = False
        for key in (self.secret, *self.previous):  # every key tried: no timing hint of which
            good |= hmac.compare_digest(self._mac(name, int(expires), key).encode(), given)
        return good and int(expires) > (time.time() if now is None else now)

    def _mac(self, name: str, expires: int, key: bytes | None = None) -> str:
        message = f"{name}\n{expires}".encode()
        return hmac.new(self.secret if key is None else key, message, hashlib.sha256).hexdigest()


def _derived(secret: bytes, path: str) -> bytes:
    """The key of links under ``path``: the secret itself for downloads (links signed before
    uploads existed keep working), a key derived from it for any other path."""
    if path == DOWNLOAD_PATH:
        return secret
    return hmac.new(secret, f"darkroom signed links: {path}".encode(), hashlib.sha256).digest()


def load_or_create_secret(configured: str, key_file: Path) -> bytes:
    """The configured secret, else one generated once and kept (owner-only) in ``key_file``."""
    if configured:
        return configured.encode()
    if key_file.exists():
        return key_file.read_bytes().strip()
    make_dirs(key_file.parent)
    value = secrets.token_hex(32).encode()
    write_new(key_file, value)
    return value
