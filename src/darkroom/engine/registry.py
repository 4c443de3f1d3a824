"""Which backend object renders a project, by the backend name the catalog gave its model."""

from __future__ import annotations

from typing import Any

from darkroom.engine.base import Backend, BackendError
from darkroom.engine.preview import PreviewBackend


class Backends:
    def __init__(self, backends: list[Backend] | None = None) -> None:
        items = backends if backends is not None else [PreviewBackend()]
        self._by_name: dict[str, Backend] = {b.name: b for b in items}

    def get(self, name: str) -> Backend:
        try:
            return self._by_name[name]
        except KeyError:
            raise BackendError(
                "backend_unavailable", f"no backend named {name!r} is running on this server"
            ) from None

    def find(self, name: str) -> Backend | None:
        return self._by_name.get(name)

    def close(self) -> None:
        """Let go of what the backends hold open (the provider backends' HTTP clients)."""
        for backend in self._by_name.values():
            close = getattr(backend, "close", None)
            if callable(close):
                close()

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def report(self) -> dict[str, dict[str, Any]]:
        """Each backend by name: the models it holds in memory (a backend that loads weights
        says which, and on which device it was asked to run), whether each model can be served
        (a vendor's API), or simply loaded (the preview backend)."""
        report: dict[str, dict[str, Any]] = {}
        for name in self.names():
            backend = self._by_name[name]
            loaded = getattr(backend, "loaded", None)
            models = getattr(backend, "models", None)
            if callable(models):  # a vendor's API: whether each model can be served ("ready")
                report[name] = {"models": models()}
            elif callable(loaded):
                report[name] = {
                    "loaded_models": loaded(),
                    "device": getattr(backend, "device_setting", None),
                }
            else:
                report[name] = {"loaded": True}
        return report
