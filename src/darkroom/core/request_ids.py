"""The id of the request being served (or of the request that created the job being rendered),
carried by a context variable: the core records it on the projects a request creates, the worker
renders under it, and every log line on its way can name it (:mod:`darkroom.observe.logs`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("darkroom_request_id", default=None)


def current_request_id() -> str | None:
    return request_id_var.get()


@contextlib.contextmanager
def request_context(request_id: str | None) -> Iterator[None]:
    """Run the block with ``request_id`` as the current request id."""
    token = request_id_var.set(request_id)
    try:
        yield
    finally:
        request_id_var.reset(token)
