"""Source images of an edit, as a request gives them: uploaded files, base64 (or data URL) text,
URLs fetched without reaching private addresses, or (the image editor's assets) the
``api-assets/`` paths of files uploaded through ``POST /v1/files/upload-urls``. Every one becomes
a checked, upright RGBA PNG before anything is charged (:mod:`darkroom.core.creation` loads
them); any problem is a 400 naming the field."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from darkroom.core.errors import InvalidRequest
from darkroom.core.source_images import check_mask, decode_base64, looks_like_url, normalise
from darkroom.net.fetch import FetchError, fetch


@dataclass(frozen=True)
class Source:
    field: str  # the request field it came in: image or mask
    data: bytes | None = None  # an uploaded file
    reference: str | None = None  # a URL, base64 or a data URL

    @classmethod
    def file(cls, data: bytes, field: str) -> Source:
        return cls(field=field, data=data)

    @classmethod
    def text(cls, reference: str, field: str) -> Source:
        return cls(field=field, reference=reference)


@dataclass(frozen=True)
class SourceLimits:
    """How large a source may be, and how one given as a URL is fetched."""

    max_bytes: int
    max_pixels: int
    fetch_timeout: float
    fetch_allow_private: bool = False


@dataclass(frozen=True)
class SourceSet:
    images: list[Source] = field(default_factory=list)
    mask: Source | None = None


# An uploaded file's path (reference, field) → its PNG and size, or InvalidRequest; blocking.
Uploaded = Callable[[str, str], tuple[bytes, tuple[int, int]]]


async def load_sources(
    sources: SourceSet, limits: SourceLimits, uploaded: Uploaded | None = None
) -> tuple[list[tuple[bytes, tuple[int, int]]], bytes | None]:
    """The PNGs of the images (in order, each with its size) and of the mask, which must match
    the first image; ``uploaded`` reads the paths of uploaded files (without it, such a path
    is refused)."""
    loaded = list(await asyncio.gather(*(_load(s, limits, uploaded) for s in sources.images)))
    mask = None
    if sources.mask is not None:
        mask, mask_size = await _load(sources.mask, limits)
        check_mask(mask_size, loaded[0][1])
    return loaded, mask


async def _load(
    source: Source, limits: SourceLimits, uploaded: Uploaded | None = None
) -> tuple[bytes, tuple[int, int]]:
    limit = limits.max_bytes
    data = source.data
    if data is None:
        reference = source.reference or ""
        if uploaded is not None and not looks_like_url(reference):
            return await asyncio.to_thread(uploaded, reference.strip(), source.field)
        if looks_like_url(reference):
            data = await _fetch(reference, source.field, limits)
        else:
            data = decode_base64(reference, max_bytes=limit, field=source.field)
    if not data:
        raise InvalidRequest(f"{source.field}: the file is empty", field=source.field)
    return await asyncio.to_thread(
        normalise,
        data,
        max_bytes=limit,
        max_pixels=limits.max_pixels,
        field=source.field,
    )


async def _fetch(url: str, field: str, limits: SourceLimits) -> bytes:
    try:
        return await fetch(
            url.strip(),
            max_bytes=limits.max_bytes,
            timeout=limits.fetch_timeout,
            allow_private=limits.fetch_allow_private,
        )
    except FetchError as exc:
        raise InvalidRequest(f"{field}: cannot use this URL: {exc.message}", field=field) from None
