"""darkroom's log lines: text for people or one JSON object per line for collectors, each with
the id of the request it belongs to (a job's lines carry the id of the request that created the
project).

What is never logged: API keys and other headers, webhook secrets, query strings (signed links
carry their signature there), and prompts, unless the operator turns prompt logging on
(``DARKROOM_LOG_PROMPTS``): log a prompt only through :func:`prompt_for_log`.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

from darkroom.core.projects import Transition
from darkroom.core.request_ids import current_request_id
from darkroom.core.status import Status
from darkroom.settings import Settings

log = logging.getLogger("darkroom.jobs")

# What a LogRecord carries by itself; anything else on a record came from ``extra=``.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "request_id",
    "color_message",  # uvicorn's coloured copy of the message
}

# Libraries whose INFO lines name whole URLs (a webhook's or a source image's, query included).
QUIET = ("httpx", "httpcore", "boto3", "botocore", "urllib3")

_handler: logging.Handler | None = None
_log_prompts = False


def configure(settings: Settings, stream: IO[str] | None = None) -> logging.Handler:
    """Send every log record at ``settings.log_level`` or above to ``stream`` (stderr) as text or
    JSON (``settings.log_format``), and set whether prompts may be logged; the :data:`QUIET`
    libraries only from WARNING. Calling it again replaces the handler it installed before; other
    handlers are left alone."""
    global _handler, _log_prompts
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    _handler = handler
    _log_prompts = settings.log_prompts
    return handler


def prompt_for_log(text: str) -> str:
    """A prompt as it may appear in a log line: quoted on one line when the operator turned
    prompt logging on, otherwise ``<hidden>``."""
    return json.dumps(text, ensure_ascii=False) if _log_prompts else "<hidden>"


class RequestIdFilter(logging.Filter):
    """Gives each record the current request id (unless it came with one in ``extra=``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id()
        return True


class TextFormatter(logging.Formatter):
    """``time LEVEL logger [request id]: message``."""

    FORMAT = "%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s"

    def __init__(self) -> None:
        super().__init__(self.FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        tag = f" [{request_id}]" if request_id else ""
        return self.FORMAT % {**vars(record), "request_tag": tag}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, request_id, the fields
    given with ``extra=`` (``project_id``...), and the formatted exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        entry.update(
            (key, value)
            for key, value in vars(record).items()
            if key not in _RECORD_FIELDS and not key.startswith("_")
        )
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def log_transition(change: Transition) -> None:
    """A ``Jobs`` observer: a line for each project created (with its prompt, as
    :func:`prompt_for_log` allows) and each one canceled, under the creating request's id."""
    project = change.project
    extra = {"project_id": project.id, "request_id": project.request_id}
    if change.previous is None:
        log.info(
            "project %s queued: %d image(s) of %s at %dx%d, %d credits, prompt %s",
            project.id,
            project.image_count,
            project.model,
            project.width,
            project.height,
            project.credits_charged,
            prompt_for_log(project.prompt),
            extra=extra,
        )
    elif project.status is Status.CANCELED:
        log.info(
            "project %s canceled while %s, %d credits refunded",
            project.id,
            change.previous.value,
            change.refunded,
            extra=extra,
        )
