"""Identifiers and secrets: random, URL-safe, lowercase so they work as file names."""

from __future__ import annotations

import base64
import secrets


def new_id(prefix: str, nbytes: int = 12) -> str:
    raw = base64.b32encode(secrets.token_bytes(nbytes)).decode().rstrip("=").lower()
    return f"{prefix}_{raw}"
