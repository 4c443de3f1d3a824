"""Project files on the local disk.

Rendered images: ``<images_dir>/<project_id>-<n>.<ext>``, n from 1, ext ``png``, ``jpg`` or
``webp``. Source images of an edit (normalised PNGs) and its mask: ``<sources_dir>/<project_id>-
s<i>.png`` and ``<project_id>-mask.png``, kept until the project ends.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from darkroom.engine.encode import extension

_NAME = re.compile(r"^(img_[a-z0-9]{8,40})-([1-9][0-9]{0,2})\.(png|jpg|webp)$")


class ProjectFiles(Protocol):
    """What file handling needs to know of a project."""

    @property
    def id(self) -> str: ...
    @property
    def image_count(self) -> int: ...
    @property
    def output_format(self) -> str: ...
    @property
    def source_count(self) -> int: ...
    @property
    def has_mask(self) -> bool: ...


def output_name(project_id: str, n: int, fmt: str = "png") -> str:
    return f"{project_id}-{n}.{extension(fmt)}"


def output_names(project: ProjectFiles) -> list[str]:
    return [
        output_name(project.id, n, project.output_format) for n in range(1, project.image_count + 1)
    ]


def parse_output_name(name: str) -> tuple[str, int, str] | None:
    """``(project_id, n, extension)`` of an output file name, or None."""
    match = _NAME.match(name)
    return None if match is None else (match.group(1), int(match.group(2)), match.group(3))


class LocalFiles:
    def __init__(self, root: Path, sources_root: Path | None = None) -> None:
        self.root = root
        self.sources_root = sources_root or root / "sources"
        root.mkdir(parents=True, exist_ok=True)
        self.sources_root.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.root / name

    def save(self, project_id: str, n: int, data: bytes, fmt: str = "png") -> Path:
        return _write_atomically(self.path(output_name(project_id, n, fmt)), data)

    def delete(self, project_id: str, count: int, fmt: str = "png") -> None:
        for n in range(1, count + 1):
            self.path(output_name(project_id, n, fmt)).unlink(missing_ok=True)

    # -- sources of an edit ----------------------------------------------------------------------

    def save_sources(self, project_id: str, images: list[bytes], mask: bytes | None) -> None:
        for i, data in enumerate(images, start=1):
            _write_atomically(self._source_path(project_id, i), data)
        if mask is not None:
            _write_atomically(self._mask_path(project_id), mask)

    def load_sources(self, project: ProjectFiles) -> tuple[tuple[bytes, ...], bytes | None]:
        """The stored sources and mask; FileNotFoundError if any is missing."""
        images = tuple(
            self._source_path(project.id, i).read_bytes()
            for i in range(1, project.source_count + 1)
        )
        mask = self._mask_path(project.id).read_bytes() if project.has_mask else None
        return images, mask

    def delete_sources(self, project_id: str, count: int) -> None:
        for i in range(1, count + 1):
            self._source_path(project_id, i).unlink(missing_ok=True)
        self._mask_path(project_id).unlink(missing_ok=True)

    def delete_project(self, project: ProjectFiles) -> None:
        """Everything stored for a project: its images and its sources."""
        self.delete(project.id, project.image_count, project.output_format)
        self.delete_sources(project.id, project.source_count)

    def _source_path(self, project_id: str, i: int) -> Path:
        return self.sources_root / f"{project_id}-s{i}.png"

    def _mask_path(self, project_id: str) -> Path:
        return self.sources_root / f"{project_id}-mask.png"


def _write_atomically(target: Path, data: bytes) -> Path:
    """A reader sees the whole file or none."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
