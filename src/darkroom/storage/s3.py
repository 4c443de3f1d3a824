"""Objects in an S3-compatible bucket (AWS S3, MinIO, Ceph radosgw, Cloudflare R2, GCS's S3 API),
through boto3.

Why boto3: it is the reference client, and it reads its configuration the way every AWS tool
does (``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
profiles, instance and container roles), so an operator's existing set-up works unchanged; it
presigns URLs locally and its client is thread-safe. darkroom's storage calls run on threads
already (renders and downloads), so an async client would buy nothing here. ``AWS_REGION`` is
read too (boto3 itself reads only ``AWS_DEFAULT_REGION``).

With an endpoint other than AWS's, requests use path-style addressing (``endpoint/bucket/key``),
which every S3-compatible server understands, and checksums only where the API requires them
(several S3-compatible servers reject the newer default ones). Presigned URLs use SigV4.

Download links (``DARKROOM_STORAGE_LINKS``): with ``presigned`` (the default) a project's
``downloads[].url`` is a presigned GET URL of the bucket, valid as long as darkroom's own link
would be (at most a week, SigV4's limit), so the bytes go from the bucket to the client directly
and no darkroom node serves them; a link signed by darkroom earlier answers with a redirect to
one. Why not always darkroom's link with a redirect: the published ``magic_hour`` SDK does not
follow redirects. A deleted project's objects are deleted, so its presigned URLs answer 404 on
every node at once. With ``proxy``, links are darkroom's and it streams the bytes, for a bucket
that clients cannot reach.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

from darkroom.storage.objects import (
    ObjectMissing,
    Redirect,
    Served,
    StorageConfigError,
    StorageError,
    StorageFull,
    StorageRefused,
    Stream,
)

# How long the presigned URL behind a redirect works: long enough to follow the redirect and
# download, short enough that a URL copied out of a redirect soon stops working.
REDIRECT_SECONDS = 300
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4
CHUNK = 256 * 1024
_T = TypeVar("_T")
_MISSING = {"NoSuchKey", "404", "NotFound"}
# What buckets answer a write when out of room: Ceph RGW and AWS (a quota), MinIO (its disks).
_FULL = {"QuotaExceeded", "XMinioStorageFull", "InsufficientStorage", "507"}


class S3Store:
    def __init__(self, bucket: str, prefix: str = "", *, links: str = "presigned") -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise StorageConfigError(
                "storage: s3:// needs boto3: pip install 'darkroom[s3]'"
            ) from None
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.links = links
        custom_endpoint = bool(
            os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        )
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if custom_endpoint else "auto"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"mode": "standard", "max_attempts": 4},
            connect_timeout=5,
            read_timeout=60,
            max_pool_connections=32,
        )
        region = os.environ.get("AWS_REGION") or None
        self._client: Any = boto3.session.Session().client("s3", region_name=region, config=config)

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix} at {self.endpoint}"

    @property
    def endpoint(self) -> str:
        return str(self._client.meta.endpoint_url)

    def check(self, *, write: bool = False) -> None:
        def probe() -> None:
            self._client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
            if write:
                name = f"{self.prefix}.probe-{secrets.token_hex(6)}"
                self._client.put_object(Bucket=self.bucket, Key=name, Body=b"")
                self._client.delete_object(Bucket=self.bucket, Key=name)

        _guarded(self, probe, config=True)

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        _guarded(
            self,
            lambda: self._client.put_object(
                Bucket=self.bucket, Key=self.prefix + key, Body=data, ContentType=content_type
            ),
            write=True,
        )

    def get(self, key: str) -> bytes:
        def read() -> bytes:
            answer = self._client.get_object(Bucket=self.bucket, Key=self.prefix + key)
            return bytes(answer["Body"].read())

        return _guarded(self, read, key=key)

    def delete(self, keys: Iterable[str]) -> None:
        names = [self.prefix + key for key in keys]
        for start in range(0, len(names), 1000):  # the most one DeleteObjects takes
            batch = [{"Key": name} for name in names[start : start + 1000]]
            answer = _guarded(
                self,
                lambda batch=batch: self._client.delete_objects(  # type: ignore[misc]
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                ),
            )
            errors = [e for e in answer.get("Errors", []) if e.get("Code") not in _MISSING]
            if errors:
                first = errors[0]
                raise StorageError(
                    f"storage: could not delete {len(errors)} objects "
                    f"({first.get('Code')}: {first.get('Message')})"
                )

    def list(self, prefix: str) -> list[str]:
        def pages() -> list[str]:
            keys: list[str] = []
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                keys += [item["Key"][len(self.prefix) :] for item in page.get("Contents", [])]
            return sorted(keys)

        return _guarded(self, pages)

    def presign(self, key: str, *, filename: str, content_type: str, expires_in: int) -> str | None:
        if self.links != "presigned":
            return None
        return self._presigned(key, filename, content_type, expires_in)

    def presign_put(self, key: str, *, expires_in: int) -> str | None:
        # A bucket that clients cannot reach (links = "proxy") takes uploads through darkroom,
        # as it serves downloads. No Content-Type is signed: the published SDK's PUT sends none.
        if self.links != "presigned":
            return None
        params = {"Bucket": self.bucket, "Key": self.prefix + key}
        seconds = max(1, min(expires_in, MAX_PRESIGN_SECONDS))
        url = self._client.generate_presigned_url("put_object", Params=params, ExpiresIn=seconds)
        return str(url)

    def size(self, key: str) -> int:
        answer = _guarded(
            self,
            lambda: self._client.head_object(Bucket=self.bucket, Key=self.prefix + key),
            key=key,
        )
        return int(answer["ContentLength"])

    def serve(self, key: str, *, filename: str, content_type: str, expires_in: int) -> Served:
        if self.links == "presigned":
            seconds = max(1, min(expires_in, REDIRECT_SECONDS))
            return Redirect(self._presigned(key, filename, content_type, seconds), seconds)
        answer = _guarded(
            self,
            lambda: self._client.get_object(Bucket=self.bucket, Key=self.prefix + key),
            key=key,
        )
        return Stream(_chunks(answer["Body"]), int(answer["ContentLength"]))

    def _presigned(self, key: str, filename: str, content_type: str, seconds: int) -> str:
        params = {
            "Bucket": self.bucket,
            "Key": self.prefix + key,
            "ResponseContentType": content_type,
            "ResponseContentDisposition": f'attachment; filename="{filename}"',
        }
        seconds = max(1, min(seconds, MAX_PRESIGN_SECONDS))
        url = self._client.generate_presigned_url("get_object", Params=params, ExpiresIn=seconds)
        return str(url)


def _chunks(body: Any) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(CHUNK)
    finally:
        body.close()


def _guarded(
    store: S3Store,
    call: Callable[[], _T],
    *,
    config: bool = False,
    key: str | None = None,
    write: bool = False,
) -> _T:
    """``call()``, with boto3's exceptions turned into :class:`StorageError` (or
    :class:`StorageConfigError` while checking the configuration) with one line that says what
    to fix, and a missing ``key`` into :class:`ObjectMissing`. A ``write`` the bucket answered
    with an error is :class:`StorageFull` (a quota reached) or :class:`StorageRefused`."""
    from botocore import exceptions as boto

    error: type[StorageError] = StorageConfigError if config else StorageError
    try:
        return call()
    except boto.ClientError as exc:
        details = exc.response.get("Error", {})
        code = str(details.get("Code", ""))
        if key is not None and code in _MISSING:
            raise ObjectMissing(f"no object {key}") from None
        if write and not config:
            error = StorageFull if code in _FULL else StorageRefused
        raise error(_client_error(store, code, str(details.get("Message") or ""))) from None
    except (boto.NoCredentialsError, boto.PartialCredentialsError):
        raise error(
            "storage: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or use a profile or an instance role)"
        ) from None
    except (boto.EndpointConnectionError, boto.ConnectTimeoutError):
        raise error(f"storage: cannot reach the S3 endpoint {store.endpoint}") from None
    except boto.BotoCoreError as exc:
        raise error(f"storage: S3 at {store.endpoint}: {exc}") from None


def _client_error(store: S3Store, code: str, message: str) -> str:
    where = f"bucket {store.bucket!r} at {store.endpoint}"
    if code in _FULL:
        return f"storage: {where} is full ({code})"
    if code in ("NoSuchBucket", "404"):
        return f"storage: {where} does not exist (create it first)"
    if code == "InvalidAccessKeyId":
        return f"storage: {where} refused the access key (AWS_ACCESS_KEY_ID unknown there)"
    if code == "SignatureDoesNotMatch":
        return f"storage: {where} refused the credentials (wrong AWS_SECRET_ACCESS_KEY)"
    if code in ("AccessDenied", "403", "AllAccessDisabled"):
        return f"storage: {where} denied access to these credentials"
    return f"storage: {where}: {code or 'error'} {message}".rstrip()


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` → ``(bucket, prefix)``; :class:`StorageConfigError` otherwise."""
    parts = urlsplit(url)
    bucket = parts.netloc
    if parts.scheme != "s3" or len(bucket) < 3 or parts.query or parts.fragment:
        raise StorageConfigError(
            f"storage: {url!r} is not an S3 location (expected s3://bucket or s3://bucket/prefix)"
        )
    return bucket, parts.path.strip("/")
