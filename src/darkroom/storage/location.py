"""Which object store a node uses: ``DARKROOM_STORAGE_URL`` is a directory (the embedded default
is the data directory) or ``s3://bucket/prefix``."""

from __future__ import annotations

from pathlib import Path

from darkroom.storage.local import LocalStore
from darkroom.storage.objects import ObjectStore, StorageConfigError


def open_store(url: str, default_root: Path, *, links: str = "presigned") -> ObjectStore:
    """The store named by ``url`` (a path or ``file://`` URL, ``s3://...``, or empty for
    ``default_root``), checked: :class:`StorageConfigError` with one line when it cannot be
    used."""
    store: ObjectStore
    if url.startswith("s3://"):
        from darkroom.storage.s3 import S3Store, parse_s3_url

        bucket, prefix = parse_s3_url(url)
        store = S3Store(bucket, prefix, links=links)
    elif "://" in url and not url.startswith("file://"):
        raise StorageConfigError(
            f"storage: {url!r}: expected a directory, file:///path or s3://bucket/prefix"
        )
    else:
        path = url.removeprefix("file://")
        store = LocalStore(Path(path) if path else default_root)
    store.check(write=True)
    return store
