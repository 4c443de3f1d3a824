"""The progress display of ``darkroom generate``, on stderr: one line rewritten in place on a
terminal, one line per step otherwise (logs, pipes)."""

from __future__ import annotations

from typing import TextIO

from darkroom.sdk.types import Progress


def describe(progress: Progress) -> str:
    project = progress.project
    stage = progress.stage
    if stage == "downloading":
        what = f"downloading {progress.downloaded + 1}/{progress.total}"
    elif stage == "complete":
        saved = f", {progress.downloaded} saved" if progress.downloaded else ""
        what = f"complete{saved}"
    elif stage == "error" and project.error is not None:
        what = f"error: {project.error.message} ({project.error.code})"
    else:
        what = stage
    return f"{project.id}  {what}  [{progress.elapsed:.1f} s]"


class ProgressLine:
    def __init__(self, stream: TextIO, *, enabled: bool = True) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = stream.isatty()
        self._width = 0

    def update(self, progress: Progress) -> None:
        if not self.enabled:
            return
        text = describe(progress)
        if self.tty:
            padding = " " * max(0, self._width - len(text))
            self.stream.write(f"\r{text}{padding}")
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
