"""Saving downloads: streamed into a hidden temporary file beside the target, verified, then
given a name that no existing file has, so nothing is ever overwritten or left half-written."""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import tempfile
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse

from darkroom.sdk.errors import DownloadError
from darkroom.sdk.types import Download

# The first bytes of each image format a server may send.
_SIGNATURES = {
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpeg": (b"\xff\xd8\xff",),
    "gif": (b"GIF87a", b"GIF89a"),
}


def image_kind(head: bytes) -> str | None:
    """``png``, ``jpeg``, ``webp`` or ``gif`` from a file's first bytes, or None."""
    for kind, signatures in _SIGNATURES.items():
        if head.startswith(signatures):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


class Sink:
    """Receives a download's bytes: written to a temporary file while hashed and counted."""

    def __init__(self, directory: Path) -> None:
        fd, name = tempfile.mkstemp(dir=directory, prefix=".darkroom-", suffix=".part")
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0
        self.head = b""

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)
        if len(self.head) < 16:
            self.head = (self.head + chunk)[:16]

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def discard(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def verify(sink: Sink, item: Download, headers: Mapping[str, str]) -> None:
    """Raise :class:`DownloadError` unless the bytes are a whole image: the announced length,
    the digest and size the project lists (darkroom sends both), an image signature."""
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) != sink.size:
        raise DownloadError(
            f"download truncated: {sink.size} of {length} bytes", item.url, retryable=True
        )
    if item.bytes is not None and item.bytes != sink.size:
        raise DownloadError(
            f"download has {sink.size} bytes, the project lists {item.bytes}",
            item.url,
            retryable=True,
        )
    if item.sha256 is not None and item.sha256 != sink.sha256:
        raise DownloadError(
            "download does not match the SHA-256 the project lists", item.url, retryable=True
        )
    if image_kind(sink.head) is None:
        raise DownloadError("download is not a PNG, JPEG, WEBP or GIF image", item.url)


def file_name(url: str, fallback: str) -> str:
    """The URL path's last segment (as the published SDK names files), made safe."""
    name = posixpath.basename(unquote(urlparse(url).path))
    name = name.replace("\\", "_").strip(". ")
    return name or fallback


def place(sink: Sink, directory: Path, name: str) -> Path:
    """Move the verified temporary file to ``directory/name``, or ``name (1)``, ``name (2)``...
    when that exists: a name is claimed with an exclusive create, so a file that appears
    meanwhile is not overwritten either."""
    sink.close()
    stem, suffix = Path(name).stem, Path(name).suffix
    for n in range(10_000):
        candidate = directory / (name if n == 0 else f"{stem} ({n}){suffix}")
        try:
            with candidate.open("xb"):
                pass
        except FileExistsError:
            continue
        sink.path.replace(candidate)
        return candidate
    sink.discard()
    raise DownloadError(f"no free file name for {name} in {directory}", name)
