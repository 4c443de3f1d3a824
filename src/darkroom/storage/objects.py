"""The one storage interface: named objects (bytes under a key such as ``images/img_x/a1-1.png``)
in a local directory or an S3-compatible bucket.

Keys are made by :mod:`darkroom.storage.files`; nothing outside this package knows paths, buckets
or prefixes. Every call blocks (run it on a thread from async code).

Download links: a store that can hand out URLs of its own (a bucket with presigned URLs) gives
them from :meth:`ObjectStore.presign`, and the bytes never pass through darkroom. Otherwise links
are darkroom's own, and :meth:`ObjectStore.serve` says how to answer one: a :class:`LocalFile`
(darkroom sends the file), a :class:`Redirect` (to a presigned URL) or a :class:`Stream` (darkroom
relays the bytes, for a bucket that clients cannot reach).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class StorageError(Exception):
    """A store refused or failed an operation; ``message`` is one line for people."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StorageFull(StorageError):
    """A write found no room: the disk is full, or the bucket's quota is reached."""


class StorageRefused(StorageError):
    """The store refused a write: permissions, a read-only disk, an object it will not take."""


class StorageConfigError(StorageError, ValueError):
    """The configured storage cannot be used (unknown bucket, refused credentials, unreachable
    endpoint, an unusable URL): darkroom refuses to start, with this one line."""


class ObjectMissing(StorageError):
    """No object under that key."""


@dataclass(frozen=True)
class LocalFile:
    path: Path


@dataclass(frozen=True)
class Redirect:
    url: str
    expires_in: int  # seconds the URL keeps working


@dataclass(frozen=True)
class Stream:
    chunks: Iterator[bytes]
    length: int


Served = LocalFile | Redirect | Stream


class ObjectStore(Protocol):
    @property
    def location(self) -> str:
        """Where the objects are, for people (no secrets): a directory or ``s3://bucket/prefix``."""
        ...

    def check(self, *, write: bool = False) -> None:
        """Raise :class:`StorageConfigError` with one clear line unless the store answers (and,
        with ``write``, takes and removes a probe object)."""
        ...

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        """Store ``data`` under ``key``: readers see all of it or nothing."""
        ...

    def get(self, key: str) -> bytes:
        """The object's bytes; :class:`ObjectMissing` when there is none."""
        ...

    def delete(self, keys: Iterable[str]) -> None:
        """Remove these objects; a missing one is no error."""
        ...

    def list(self, prefix: str) -> list[str]:
        """Every key that starts with ``prefix``."""
        ...

    def presign(self, key: str, *, filename: str, content_type: str, expires_in: int) -> str | None:
        """A URL of the store's own that serves the object for ``expires_in`` seconds without
        credentials, or None when it has none (a directory; a bucket behind a proxy)."""
        ...

    def presign_put(self, key: str, *, expires_in: int) -> str | None:
        """A URL of the store's own that takes the object's bytes in a ``PUT`` for
        ``expires_in`` seconds without other credentials, or None when it has none (a
        directory: darkroom takes the PUT itself)."""
        ...

    def size(self, key: str) -> int:
        """The object's size in bytes; :class:`ObjectMissing` when there is none."""
        ...

    def serve(self, key: str, *, filename: str, content_type: str, expires_in: int) -> Served:
        """How to send the object to a client; :class:`ObjectMissing` when there is none."""
        ...
