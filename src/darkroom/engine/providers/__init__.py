"""Backends that render through a vendor's image API: one module per vendor (``openai``,
``gemini``, ``seedream``) over the shared machinery of :mod:`darkroom.engine.providers.base`."""

from __future__ import annotations

from collections.abc import Mapping

from darkroom.engine.providers.base import ProviderBackend, Vendor
from darkroom.engine.providers.gemini import Gemini
from darkroom.engine.providers.openai import OpenAI
from darkroom.engine.providers.seedream import Seedream
from darkroom.engine.upstream import UpstreamEntry

VENDORS: dict[str, Vendor] = {vendor.name: vendor for vendor in (OpenAI(), Gemini(), Seedream())}


def provider_backends(
    upstreams: Mapping[str, tuple[str, UpstreamEntry]], environ: Mapping[str, str]
) -> list[ProviderBackend]:
    """One backend per vendor that some model uses; ``upstreams``: model → (vendor, upstream)."""
    backends = []
    for name, vendor in VENDORS.items():
        mine = {model: entry for model, (backend, entry) in upstreams.items() if backend == name}
        if mine:
            backends.append(ProviderBackend(vendor, mine, environ))
    return backends


__all__ = ["VENDORS", "ProviderBackend", "provider_backends"]
