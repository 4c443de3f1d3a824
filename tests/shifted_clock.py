"""``python -m tests.shifted_clock SECONDS ARGS...``: the ``darkroom`` command (``ARGS``) in a
process whose wall clock is ``SECONDS`` ahead (behind, when negative) of the machine's, as on a
node with a broken NTP or restored from a snapshot.

libfaketime's ``faketime`` breaks Python 3.11's waits, so this is a test double instead: it
shifts ``time.time`` and darkroom's clock helper (``store.database.utcnow``, in every module that
imported it) before anything runs. Monotonic time, which waits and timeouts use, is the
machine's, as it is on a real node."""

from __future__ import annotations

import importlib
import sys
import time
from datetime import datetime, timedelta


def shift_clock(seconds: float) -> None:
    real_time = time.time
    time.time = lambda: real_time() + seconds  # type: ignore[assignment]
    time.time_ns = lambda: int((real_time() + seconds) * 1e9)  # type: ignore[assignment]
    # Everything the command runs, imported now, so that each module's name for the helper is
    # the shifted one.
    for name in ("darkroom.services", "darkroom.api.app", "darkroom.cli.main"):
        importlib.import_module(name)
    from darkroom.store import database

    real_utcnow = database.utcnow

    def shifted_utcnow() -> datetime:
        return real_utcnow() + timedelta(seconds=seconds)

    for name, module in list(sys.modules.items()):
        if name.startswith("darkroom") and getattr(module, "utcnow", None) is real_utcnow:
            module.utcnow = shifted_utcnow  # type: ignore[attr-defined]


if __name__ == "__main__":
    shift_clock(float(sys.argv[1]))
    from darkroom.cli.main import main

    sys.exit(main(sys.argv[2:]))
