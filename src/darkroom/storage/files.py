"""Rendered images on the local disk: ``<images_dir>/<project_id>-<n>.png``, n from 1."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

_NAME = re.compile(r"^(img_[a-z0-9]{8,40})-([1-9][0-9]{0,2})\.png$")


def output_name(project_id: str, n: int) -> str:
    return f"{project_id}-{n}.png"


def parse_output_name(name: str) -> tuple[str, int] | None:
    match = _NAME.match(name)
    return None if match is None else (match.group(1), int(match.group(2)))


class LocalFiles:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.root / name

    def save(self, project_id: str, n: int, data: bytes) -> Path:
        """Write atomically: a reader sees the whole file or none."""
        target = self.path(output_name(project_id, n))
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".png")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            Path(tmp).replace(target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def delete(self, project_id: str, count: int) -> None:
        for n in range(1, count + 1):
            self.path(output_name(project_id, n)).unlink(missing_ok=True)
