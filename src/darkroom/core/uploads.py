"""Uploads: ``POST /v1/files/upload-urls`` hands out, for each file a client will upload, a
``file_path`` (``api-assets/up_....png``) and a URL that takes the file in a ``PUT`` without
other credentials, as the published SDK's ``files.upload_file`` expects.

- On object storage (a bucket, ``DARKROOM_STORAGE_LINKS=presigned``) the URL is a presigned S3
  ``PUT``: the bytes go to the bucket directly. Otherwise (a directory, the embedded default;
  a bucket behind darkroom) it is darkroom's own ``PUT /v1/files/uploads/<name>``, signed and
  expiring; darkroom refuses a body over ``DARKROOM_UPLOAD_MAX_BYTES``, a wrong or expired
  signature, an expired upload and anything that is not an image, storing nothing.
- Image types only (png, jpg, jpeg, webp, avif, bmp, tif, tiff). On use (an editor's
  ``assets``) the file must belong to the caller's account, not have expired, be at most
  ``DARKROOM_UPLOAD_MAX_BYTES`` and decode as an image; else a 400 naming the path, before
  anything is charged (and a file refused for its content or size is deleted).
- Uploads expire ``DARKROOM_UPLOAD_TTL_SECONDS`` (24 h) after the URL was handed out, by the
  database's clock; a sweep deletes their objects and rows soon after.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import Connection, Row

from darkroom.core.accounts import Principal
from darkroom.core.errors import InvalidRequest, LinkRefused, StorageUnavailable, listing
from darkroom.core.ids import new_id
from darkroom.core.periodic import Periodic
from darkroom.core.source_images import UPLOAD_FORMATS, normalise, sniff
from darkroom.storage.objects import ObjectMissing, StorageError
from darkroom.storage.signing import UPLOAD_PATH, URLSigner
from darkroom.storage.uploads import UploadFiles
from darkroom.store import clock
from darkroom.store import uploads as sql
from darkroom.store.database import Database, as_utc

log = logging.getLogger("darkroom.uploads")

PATH_PREFIX = "api-assets/"
# The file types taken, by extension, with the media type they are stored under.
EXTENSIONS = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "avif": "image/avif",
    "bmp": "image/bmp",
    "tif": "image/tiff",
    "tiff": "image/tiff",
}
MAX_ITEMS = 16  # upload URLs asked for in one request
SWEEP_BATCH = 500
MAX_SWEEP_GRACE = timedelta(minutes=5)  # for clocks that differ (a presigned URL's expiry)
_NAME = re.compile(r"(up_[a-z0-9]{8,40})\.([a-z0-9]{1,8})")


def _megabytes(count: int) -> str:
    return f"{count / (1 << 20):g} MB"


@dataclass(frozen=True)
class Ticket:
    """One upload handed out: where to PUT the file, the path to name it by, until when."""

    upload_url: str
    file_path: str
    expires_at: datetime


class Uploads:
    def __init__(
        self,
        db: Database,
        files: UploadFiles,
        signer: URLSigner,
        *,
        ttl_seconds: float,
        max_bytes: int,
        max_pixels: int,
        every: float = 60.0,
    ) -> None:
        self.db = db
        self.files = files
        self.signer = signer
        self.ttl = timedelta(seconds=ttl_seconds)
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self._periodic = Periodic("uploads", self.sweep, every=every)

    # -- handing out upload URLs ---------------------------------------------------------------

    def create(self, who: Principal, items: list[tuple[str, str]]) -> list[Ticket]:
        """An upload URL and file path for each ``(type, extension)``, in order."""
        if not items:
            raise InvalidRequest("items must name at least one file to upload", field="items")
        if len(items) > MAX_ITEMS:
            raise InvalidRequest(f"ask for at most {MAX_ITEMS} uploads at once", field="items")
        extensions = []
        for i, (kind, extension) in enumerate(items):
            if kind != "image":
                raise InvalidRequest(
                    f"items[{i}].type: only image uploads are taken here, not {kind!r}",
                    field=f"items[{i}].type",
                )
            name = extension.lower().lstrip(".")
            if name not in EXTENSIONS:
                raise InvalidRequest(
                    f"items[{i}].extension: {extension!r} is not an image type taken here; "
                    f"choose one of {listing(EXTENSIONS)}",
                    field=f"items[{i}].extension",
                )
            extensions.append(name)

        def write(conn: Connection) -> list[dict[str, object]]:
            now = clock.read(conn)
            rows: list[dict[str, object]] = [
                {
                    "id": new_id("up"),
                    "account_id": who.account_id,
                    "extension": extension,
                    "created_at": now,
                    "expires_at": now + self.ttl,
                    "stored_at": None,
                    "bytes": None,
                }
                for extension in extensions
            ]
            sql.insert_uploads(conn, rows)
            return rows

        rows = self.db.transact(write)
        seconds = max(1, int(self.ttl.total_seconds()))
        tickets = []
        for row in rows:
            upload_id, extension = str(row["id"]), str(row["extension"])
            expires_at = row["expires_at"]
            assert isinstance(expires_at, datetime)
            name = f"{upload_id}.{extension}"
            url = self.files.presigned_put(upload_id, extension, seconds) or self.signer.sign(
                name, int(expires_at.timestamp())
            )
            tickets.append(Ticket(url, PATH_PREFIX + name, expires_at))
        return tickets

    # -- darkroom's own upload URLs ------------------------------------------------------------

    def receive(self, name: str, expires: str, signature: str, data: bytes) -> None:
        """Store the body of a ``PUT`` to an upload URL of darkroom's, or refuse it (storing
        nothing): :class:`LinkRefused` for a wrong or expired signature or an expired upload,
        :class:`InvalidRequest` for a body that is empty, too large or not an image."""
        parsed = _NAME.fullmatch(name)
        now = self.db.query(clock.read)
        if parsed is None or not self.signer.verify(name, expires, signature, now.timestamp()):
            raise LinkRefused(
                "This upload URL is invalid or has expired; ask POST /v1/files/upload-urls for "
                "another. Nothing was stored."
            )
        upload_id, extension = parsed.groups()
        if not data:
            raise InvalidRequest("the upload is empty; nothing was stored")
        if len(data) > self.max_bytes:
            raise InvalidRequest(
                f"the upload is larger than {_megabytes(self.max_bytes)}; nothing was stored"
            )
        if not sniff(data, UPLOAD_FORMATS):
            raise InvalidRequest(
                f"the upload is not an image ({', '.join(UPLOAD_FORMATS)}); nothing was stored"
            )
        if self.db.query(lambda conn: sql.live(conn, upload_id, clock.read(conn))) is None:
            raise LinkRefused("This upload has expired; nothing was stored.")
        try:
            self.files.save(upload_id, extension, data, EXTENSIONS[extension])
        except StorageError:
            raise StorageUnavailable() from None
        stored = self.db.transact(
            lambda conn: sql.mark_stored(conn, upload_id, len(data), clock.read(conn))
        )
        if not stored:  # it expired while the bytes were written
            self._forget([(upload_id, extension)])
            raise LinkRefused("This upload has expired; nothing was stored.")

    # -- using an upload -----------------------------------------------------------------------

    @staticmethod
    def is_path(reference: str) -> bool:
        return reference.startswith(PATH_PREFIX)

    def image(
        self, account_id: str, file_path: str, *, field: str
    ) -> tuple[bytes, tuple[int, int]]:
        """The uploaded image at ``file_path`` as an upright RGBA PNG, and its size: the
        caller's, not expired, within the size limit, and an image; else
        :class:`InvalidRequest`."""
        parsed = _NAME.fullmatch(file_path.removeprefix(PATH_PREFIX))
        if not self.is_path(file_path) or parsed is None:
            raise InvalidRequest(
                f"{field}: {file_path!r} is neither a URL nor a file_path from "
                "POST /v1/files/upload-urls",
                field=field,
            )
        upload_id, extension = parsed.groups()

        def read(conn: Connection) -> tuple[Row | None, datetime]:  # type: ignore[type-arg]
            return sql.get(conn, upload_id), clock.read(conn)

        row, now = self.db.query(read)
        if row is None or row.account_id != account_id or row.extension != extension:
            # Another account's upload is no different from one that does not exist.
            raise InvalidRequest(
                f"{field}: {file_path} is not an upload of this account", field=field
            )
        if as_utc(row.expires_at) <= now:
            raise InvalidRequest(
                f"{field}: the upload {file_path} has expired; upload the file again",
                field=field,
            )
        try:
            size = self.files.size(upload_id, extension)
            if size > self.max_bytes:
                self._forget([(upload_id, extension)])
                raise InvalidRequest(
                    f"{field}: {file_path} is larger than {_megabytes(self.max_bytes)}; "
                    "it was deleted",
                    field=field,
                )
            data = self.files.read(upload_id, extension)
        except ObjectMissing:
            raise InvalidRequest(
                f"{field}: nothing was uploaded to {file_path} yet (PUT the file to its "
                "upload_url first)",
                field=field,
            ) from None
        except StorageError:
            raise StorageUnavailable() from None
        try:
            return normalise(
                data,
                max_bytes=self.max_bytes,
                max_pixels=self.max_pixels,
                field=field,
                formats=UPLOAD_FORMATS,
            )
        except InvalidRequest as exc:
            self._forget([(upload_id, extension)])
            raise InvalidRequest(f"{exc.message}; the upload was deleted", field=field) from None

    # -- expiry --------------------------------------------------------------------------------

    def tick(self) -> None:
        """Heartbeat task: sweep the expired uploads now and then."""
        self._periodic.tick()

    def sweep(self) -> int:
        """Delete the objects and rows of the uploads that have expired; how many."""
        grace = min(MAX_SWEEP_GRACE, self.ttl)
        done = 0
        while True:

            def due(conn: Connection) -> list[tuple[str, str]]:
                rows = sql.expired(conn, clock.read(conn) - grace, SWEEP_BATCH)
                return [(row.id, row.extension) for row in rows]

            batch = self.db.query(due)
            if not batch:
                return done
            self._forget(batch)
            done += len(batch)
            log.info("uploads: deleted %d expired uploads", len(batch))

    def _forget(self, batch: list[tuple[str, str]]) -> None:
        """Objects first, then rows: a node that dies between the two leaves the rows to the
        next sweep, never an object without its row."""
        self.files.delete(batch)
        self.db.transact(partial(sql.remove, upload_ids=[upload_id for upload_id, _ in batch]))


__all__ = ["EXTENSIONS", "PATH_PREFIX", "UPLOAD_PATH", "Ticket", "Uploads"]
