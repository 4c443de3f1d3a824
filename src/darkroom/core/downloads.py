"""Downloads: the links to a project's images, and the images' bytes.

A link is a presigned URL of the bucket where the storage has them (the bytes never pass through
darkroom; a deleted project's objects are gone, so its URLs answer 404), or darkroom's own signed
link. darkroom's link is checked against its signature, then against the project as the database
has it now, so a link of a deleted project stops working on every node whoever signed it; what
:meth:`Downloads.open` gives back says how to send the bytes: a local file, a redirect to a
presigned URL, or a stream (see :mod:`darkroom.storage.objects`).
"""

from __future__ import annotations

import time
from functools import cached_property
from urllib.parse import urlsplit

from darkroom.core.errors import Gone, LinkRefused, NotFound, StorageUnavailable
from darkroom.core.projects import Project
from darkroom.core.status import Status
from darkroom.engine.encode import media_type
from darkroom.storage.files import ProjectFiles, parse_output_name
from darkroom.storage.objects import (
    LocalFile,
    ObjectMissing,
    Redirect,
    Served,
    StorageError,
    Stream,
)
from darkroom.storage.signing import DOWNLOAD_PATH, URLSigner
from darkroom.store import projects as sql
from darkroom.store.database import Database

# DOWNLOAD_PATH: where darkroom's own links point (the storage signs them for that path).
__all__ = [
    "DOWNLOAD_PATH",
    "Downloads",
    "LocalFile",
    "Redirect",
    "Served",
    "Stream",
    "content_type",
]


def content_type(name: str) -> str:
    """The media type of a downloaded image, by the extension of its name."""
    return media_type(name.rsplit(".", 1)[1])


class Downloads:
    def __init__(self, db: Database, files: ProjectFiles, signer: URLSigner) -> None:
        self.db = db
        self.files = files
        self.signer = signer

    def url(self, project: Project, n: int, expires: int) -> str:
        """The link to image ``n`` of a complete project, working until ``expires`` (epoch)."""
        ttl = max(1, expires - int(time.time()))
        presigned = self.files.presign_output(project, n, ttl)
        return presigned or self.signer.sign(self.files.output_name(project, n), expires)

    def open(self, name: str, expires: str, signature: str) -> Served:
        """What a signed link serves: :class:`LinkRefused` for a bad or expired link,
        :class:`NotFound` when the project or image is gone, :class:`Gone` when retention
        deleted it."""
        if not self.signer.verify(name, expires, signature):
            raise LinkRefused("This download link is invalid or has expired")
        parsed = parse_output_name(name)
        if parsed is None:
            raise NotFound()
        project_id, n, _ext = parsed
        row = self.db.query(lambda conn: sql.get_project(conn, project_id))
        project = None if row is None else Project.from_row(row)
        if project is None or not project.enabled or project.status is not Status.COMPLETE:
            raise NotFound()
        if n > project.image_count or name != self.files.output_name(project, n):
            raise NotFound()
        if project.outputs_deleted_at is not None:
            raise Gone("This image was deleted by the retention policy")
        remaining = max(1, int(expires) - int(time.time()))
        try:
            return self.files.serve_output(project, n, remaining)
        except ObjectMissing:
            raise NotFound() from None
        except StorageError:
            raise StorageUnavailable() from None

    @cached_property
    def image_origins(self) -> tuple[str, ...]:
        """Where links to images point besides this server (a bucket's presigned URLs), for the
        web page's Content-Security-Policy: presigned once, since the bucket's address does not
        change while the process runs."""
        url = self.files.store.presign(
            "images/probe.png", filename="probe.png", content_type="image/png", expires_in=60
        )
        if url is None:
            return ()
        parts = urlsplit(url)
        return (f"{parts.scheme}://{parts.netloc}",)

    def storage_problem(self) -> str | None:
        """Why the storage does not answer (for ``/readyz``), or None when it does."""
        try:
            self.files.store.check()
        except StorageError as exc:
            return exc.message
        return None

    def images(self, project: Project) -> list[bytes]:
        """The bytes of every image of a complete project (the OpenAI dialect's ``b64_json``)."""
        try:
            return [self.files.read_output(project, n) for n in range(1, project.image_count + 1)]
        except StorageError:
            raise StorageUnavailable() from None
