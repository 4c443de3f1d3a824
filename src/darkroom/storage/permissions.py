"""Owner-only files: what darkroom keeps on disk (the data directory: the SQLite database, the
generated secrets, the development key, images and edit sources) holds webhook secrets, prompts
and emails, so no other local user may read it. Directories are ``0700``, files ``0600``.

The modes are set where each file is created, whatever the process's umask (darkroom is also
used as a library); ``darkroom serve`` and ``darkroom worker`` also set a umask of ``077``.
:func:`tighten` takes group and other bits off what an older version left behind.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
# Bits that let someone other than the owner read, write or enter.
SHARED_BITS = 0o077

log = logging.getLogger("darkroom.storage")


def make_dirs(path: Path) -> None:
    """``mkdir -p``, each directory it creates owner-only (``Path.mkdir`` gives parents the
    default mode)."""
    if path.is_dir():
        return
    make_dirs(path.parent)
    try:
        path.mkdir(mode=DIR_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise
    else:
        path.chmod(DIR_MODE)  # exactly: an odd umask could have taken owner bits off


def write_new(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist) owner-only, holding ``data``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def own_file(path: Path) -> None:
    """Make ``path`` exist and owner-only: created empty when missing (so that a program that
    opens it later, e.g. SQLite, keeps its mode, and gives it to its journal files)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    os.close(fd)
    _restrict(path, os.lstat(path).st_mode)


def tighten(root: Path) -> int:
    """Take the group and other bits off ``root`` and what it holds (symbolic links are left
    alone); the number of files and directories changed. A file that cannot be changed (of
    another owner) is logged and skipped.

    When ``root`` is open to others (an older version's data directory), everything under it is
    walked, ``root`` last (an interrupted pass is finished at the next start). When it is
    already owner-only, nobody else can enter it, and only its own entries are checked: a large
    image store is not walked again at every start."""
    top = os.fspath(root)
    try:
        open_root = bool(os.lstat(top).st_mode & SHARED_BITS)
    except FileNotFoundError:
        return 0
    changed = _tighten_below(top, recursive=open_root)
    return changed + _tighten_one(top)


def _tighten_below(directory: str, *, recursive: bool) -> int:
    changed = 0
    try:
        entries = list(os.scandir(directory))
    except OSError as exc:
        log.warning("cannot list %s: %s", directory, exc.strerror or exc)
        return 0
    for entry in entries:
        if recursive and entry.is_dir(follow_symlinks=False):
            changed += _tighten_below(entry.path, recursive=True)
        changed += _tighten_one(entry.path)
    return changed


def _tighten_one(path: str) -> int:
    try:
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode) or not mode & SHARED_BITS:
            return 0
        os.chmod(path, stat.S_IMODE(mode) & ~SHARED_BITS)  # noqa: PTH101 (strings: many files)
    except FileNotFoundError:  # removed meanwhile
        return 0
    except OSError as exc:
        log.warning("cannot make %s readable by its owner only: %s", path, exc.strerror or exc)
        return 0
    return 1


def _restrict(path: Path, mode: int) -> None:
    if mode & SHARED_BITS:
        path.chmod(stat.S_IMODE(mode) & ~SHARED_BITS)
