"""A project's files in the object store, and the names they are published under.

Keys (relative to the store's root or prefix):

- rendered images: ``images/<project_id>/<attempt>/<project_id>-<n>.<ext>``, n from 1, ext
  ``png``, ``jpg`` or ``webp`` (the last part is the published name: a client that names the file
  after a presigned URL's path gets it too). ``attempt`` is a token new for each render
  attempt, so a worker that lost its job never writes over the images of the attempt that
  completes it; the complete project records its own keys, and the other attempts' objects are
  removed when it ends. (Images stored before
  this layout are ``images/<project_id>-<n>.<ext>``; a project without recorded keys has those.)
- source images of an edit (normalised PNGs) and its mask: ``sources/<project_id>/<i>.png`` and
  ``sources/<project_id>/mask.png``, kept until the render ends.

Published names (in download links, and the file name a client saves): ``<project_id>-<n>.<ext>``.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Protocol

from darkroom.engine.encode import extension, media_type
from darkroom.storage.objects import ObjectMissing, ObjectStore, Served, StorageError

log = logging.getLogger("darkroom.storage")

_NAME = re.compile(r"^(img_[a-z0-9]{8,40})-([1-9][0-9]{0,2})\.(png|jpg|webp)$")


class Stored(Protocol):
    @property
    def key(self) -> str | None: ...


class ProjectLike(Protocol):
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
    @property
    def stored_images(self) -> Sequence[Stored]: ...


def output_name(project_id: str, n: int, fmt: str = "png") -> str:
    return f"{project_id}-{n}.{extension(fmt)}"


def output_names(project: ProjectLike) -> list[str]:
    return [
        output_name(project.id, n, project.output_format) for n in range(1, project.image_count + 1)
    ]


def parse_output_name(name: str) -> tuple[str, int, str] | None:
    """``(project_id, n, extension)`` of a published output name, or None."""
    match = _NAME.match(name)
    return None if match is None else (match.group(1), int(match.group(2)), match.group(3))


def new_attempt() -> str:
    """A token naming one render attempt's objects."""
    return secrets.token_hex(6)


class ProjectFiles:
    def __init__(self, store: ObjectStore, *, parallel_uploads: int = 8) -> None:
        self.store = store
        self._uploads = ThreadPoolExecutor(parallel_uploads, thread_name_prefix="darkroom-store")

    # -- rendered images -------------------------------------------------------------------------

    def save_output(self, project_id: str, attempt: str, n: int, data: bytes, fmt: str) -> str:
        """Store image ``n`` of an attempt; its key, to record when the project completes."""
        key = f"images/{project_id}/{attempt}/{output_name(project_id, n, fmt)}"
        self.store.put(key, data, content_type=media_type(fmt))
        return key

    @staticmethod
    def output_name(project: ProjectLike, n: int) -> str:
        """The name image ``n`` is published under."""
        return output_name(project.id, n, project.output_format)

    def save_outputs(
        self, project_id: str, attempt: str, images: Sequence[bytes], fmt: str
    ) -> list[str]:
        """Store every image of an attempt at once (a bucket takes them in parallel); their keys
        in order. If one cannot be stored, those that were are removed and the error raised."""
        if len(images) == 1:
            return [self.save_output(project_id, attempt, 1, images[0], fmt)]
        futures = [
            self._uploads.submit(self.save_output, project_id, attempt, n, data, fmt)
            for n, data in enumerate(images, start=1)
        ]
        wait(futures)
        errors = [error for error in (f.exception() for f in futures) if error is not None]
        if errors:
            quietly(lambda: self.discard([f.result() for f in futures if f.exception() is None]))
            raise errors[0]
        return [f.result() for f in futures]

    def output_key(self, project: ProjectLike, n: int) -> str:
        stored = project.stored_images
        if n <= len(stored) and stored[n - 1].key:
            return str(stored[n - 1].key)
        return f"images/{output_name(project.id, n, project.output_format)}"  # before keys

    def read_output(self, project: ProjectLike, n: int) -> bytes:
        return self.store.get(self.output_key(project, n))

    def presign_output(self, project: ProjectLike, n: int, expires_in: int) -> str | None:
        return self.store.presign(
            self.output_key(project, n),
            filename=output_name(project.id, n, project.output_format),
            content_type=media_type(project.output_format),
            expires_in=expires_in,
        )

    def serve_output(self, project: ProjectLike, n: int, expires_in: int) -> Served:
        return self.store.serve(
            self.output_key(project, n),
            filename=output_name(project.id, n, project.output_format),
            content_type=media_type(project.output_format),
            expires_in=expires_in,
        )

    def keep_only(self, project_id: str, keys: Sequence[str]) -> None:
        """Remove every image object of the project but ``keys`` (those it recorded when it
        completed): what attempts that were cut off had written."""
        others = [k for k in self.store.list(f"images/{project_id}/") if k not in set(keys)]
        if others:
            self.store.delete(others)

    def discard(self, keys: Sequence[str]) -> None:
        if keys:
            self.store.delete(keys)

    def delete_outputs(self, project: ProjectLike) -> None:
        """Every image object of the project (of any attempt)."""
        legacy = [f"images/{name}" for name in output_names(project)]
        self.store.delete([*self.store.list(f"images/{project.id}/"), *legacy])

    # -- sources of an edit ----------------------------------------------------------------------

    def save_sources(self, project_id: str, images: list[bytes], mask: bytes | None) -> None:
        for i, data in enumerate(images, start=1):
            self.store.put(self._source_key(project_id, i), data, content_type="image/png")
        if mask is not None:
            self.store.put(self._mask_key(project_id), mask, content_type="image/png")

    def load_sources(self, project: ProjectLike) -> tuple[tuple[bytes, ...], bytes | None]:
        """The stored sources and mask; :class:`ObjectMissing` if any is missing."""
        images = tuple(
            self.store.get(self._source_key(project.id, i))
            for i in range(1, project.source_count + 1)
        )
        mask = self.store.get(self._mask_key(project.id)) if project.has_mask else None
        return images, mask

    def delete_sources(self, project_id: str, count: int) -> None:
        if count:
            keys = [self._source_key(project_id, i) for i in range(1, count + 1)]
            self.store.delete([*keys, self._mask_key(project_id)])

    # -- everything ------------------------------------------------------------------------------

    def delete_project(self, project: ProjectLike) -> None:
        """Everything stored for a project: its images of every attempt, and its sources."""
        self.delete_outputs(project)
        self.delete_sources(project.id, project.source_count)

    def keys(self, project_id: str) -> list[str]:
        """Every object of the project (images of any attempt, and sources)."""
        return self.store.list(f"images/{project_id}/") + self.store.list(f"sources/{project_id}/")

    @staticmethod
    def _source_key(project_id: str, i: int) -> str:
        return f"sources/{project_id}/{i}.png"

    @staticmethod
    def _mask_key(project_id: str) -> str:
        return f"sources/{project_id}/mask.png"


def quietly(remove: Callable[[], None]) -> None:
    """Run a removal; a storage that fails it is logged, not raised: the database already says
    the objects are gone, and no link serves them."""
    try:
        remove()
    except StorageError as exc:
        log.warning("storage: objects left behind: %s", exc.message)


__all__ = ["ObjectMissing", "ProjectFiles", "new_attempt", "output_name", "parse_output_name"]
