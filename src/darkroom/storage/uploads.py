"""Uploaded files in the object store (``POST /v1/files/upload-urls``): the object
``uploads/<upload_id>.<extension>`` of each upload, PUT by the client to a presigned URL of the
bucket, or received by darkroom and stored here."""

from __future__ import annotations

from collections.abc import Iterable

from darkroom.storage.objects import ObjectStore


class UploadFiles:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    @staticmethod
    def key(upload_id: str, extension: str) -> str:
        return f"uploads/{upload_id}.{extension}"

    def presigned_put(self, upload_id: str, extension: str, expires_in: int) -> str | None:
        """A URL of the store's own that takes the upload's PUT, or None (darkroom takes it)."""
        return self.store.presign_put(self.key(upload_id, extension), expires_in=expires_in)

    def save(self, upload_id: str, extension: str, data: bytes, content_type: str) -> None:
        self.store.put(self.key(upload_id, extension), data, content_type=content_type)

    def size(self, upload_id: str, extension: str) -> int:
        """The stored upload's size; :class:`ObjectMissing` when nothing was uploaded."""
        return self.store.size(self.key(upload_id, extension))

    def read(self, upload_id: str, extension: str) -> bytes:
        return self.store.get(self.key(upload_id, extension))

    def delete(self, uploads: Iterable[tuple[str, str]]) -> None:
        """Remove these uploads' objects (``(upload_id, extension)`` pairs)."""
        keys = [self.key(upload_id, extension) for upload_id, extension in uploads]
        if keys:
            self.store.delete(keys)
