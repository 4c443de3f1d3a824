"""Objects as files under one directory: the embedded default (the data directory), or one
directory that every node of a cluster mounts.

A key ``images/img_x/a1-1.png`` is the file ``<root>/images/img_x/a1-1.png``. A file is written
to a temporary name and renamed, so a reader sees all of it or none. Directories and files are
readable by their owner only (``storage/permissions.py``): the nodes of a cluster that share the
directory run as one user.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from darkroom.storage.objects import (
    LocalFile,
    ObjectMissing,
    Served,
    StorageConfigError,
    StorageError,
    StorageFull,
    StorageRefused,
)
from darkroom.storage.permissions import make_dirs


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    @property
    def location(self) -> str:
        return str(self.root)

    def check(self, *, write: bool = False) -> None:
        try:
            make_dirs(self.root)
            if write:
                probe = self.root / f".probe-{os.getpid()}"
                probe.write_bytes(b"")
                probe.unlink()
        except OSError as exc:
            raise StorageConfigError(
                f"storage: cannot write to {self.root}: {exc.strerror or exc}"
            ) from None
        if not os.access(self.root, os.R_OK | os.W_OK | os.X_OK):
            raise StorageConfigError(f"storage: cannot read and write {self.root}")

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        target = self._path(key)
        try:
            make_dirs(target.parent)
            # mkstemp creates the file owner-only (0600); the rename keeps its mode.
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
        except OSError as exc:
            raise write_error(exc) from None
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            Path(tmp).replace(target)
        except BaseException as exc:
            Path(tmp).unlink(missing_ok=True)  # no half-written file stays behind
            if isinstance(exc, OSError):
                raise write_error(exc) from None
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectMissing(f"no object {key}") from None

    def delete(self, keys: Iterable[str]) -> None:
        parents = set()
        for key in keys:
            path = self._path(key)
            path.unlink(missing_ok=True)
            parents.add(path.parent)
        for parent in parents:  # a project's directory goes with its last file
            if parent != self.root:
                with contextlib.suppress(OSError):  # not empty, or already gone
                    parent.rmdir()

    def list(self, prefix: str) -> list[str]:
        folder = self._path(prefix.rsplit("/", 1)[0]) if "/" in prefix else self.root
        if not folder.is_dir():
            return []
        keys = []
        for dirpath, _dirs, names in os.walk(folder):
            for name in names:
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix) and not name.startswith(".tmp-"):
                    keys.append(key)
        return sorted(keys)

    def presign(self, key: str, *, filename: str, content_type: str, expires_in: int) -> str | None:
        return None

    def presign_put(self, key: str, *, expires_in: int) -> str | None:
        return None

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectMissing(f"no object {key}") from None

    def serve(self, key: str, *, filename: str, content_type: str, expires_in: int) -> Served:
        path = self._path(key)
        if not path.is_file():
            raise ObjectMissing(f"no object {key}")
        return LocalFile(path)

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"not an object key: {key!r}")
        return self.root.joinpath(*parts)


_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_REFUSED = {errno.EACCES, errno.EPERM, errno.EROFS}


def write_error(exc: OSError) -> StorageError:
    """A failed write as one line for people (no path: it may reach an API caller)."""
    reason = exc.strerror or type(exc).__name__
    if exc.errno in _FULL:
        return StorageFull(f"storage: the disk is full ({reason})")
    if exc.errno in _REFUSED:
        return StorageRefused(f"storage: the disk refused the write ({reason})")
    return StorageError(f"storage: the write failed ({reason})")
