"""Signed, expiring download links: HMAC-SHA256 over the file name and the expiry time.

A link works without an API key until it expires; changing any part of it breaks the signature.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from urllib.parse import quote, urlencode

DOWNLOAD_PATH = "/downloads"


class URLSigner:
    def __init__(self, secret: bytes, base_url: str) -> None:
        self.secret = secret
        self.base_url = base_url.rstrip("/")

    def sign(self, name: str, expires: int) -> str:
        query = urlencode({"expires": expires, "signature": self._mac(name, expires)})
        return f"{self.base_url}{DOWNLOAD_PATH}/{quote(name)}?{query}"

    def verify(self, name: str, expires: str, signature: str, now: float | None = None) -> bool:
        """Whether the link is genuine and not expired."""
        if not (expires.isascii() and expires.isdigit()) or len(expires) > 12:
            return False
        good = hmac.compare_digest(self._mac(name, int(expires)).encode(), signature.encode())
        return good and int(expires) > (time.time() if now is None else now)

    def _mac(self, name: str, expires: int) -> str:
        message = f"{name}\n{expires}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()


def load_or_create_secret(configured: str, key_file: Path) -> bytes:
    """The configured secret, else one generated once and kept (owner-only) in ``key_file``."""
    if configured:
        return configured.encode()
    if key_file.exists():
        return key_file.read_bytes().strip()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32).encode()
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(value)
    return value
