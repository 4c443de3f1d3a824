"""Signals between processes: "a job is ready", "this project changed", "this key changed",
"deliveries are due".

Writers call :meth:`Database.notify_in` inside their transaction; once it commits, the signal
reaches this process's subscribers at once (SQLite and PostgreSQL alike) and, on PostgreSQL,
every other process through ``LISTEN/NOTIFY``: one connection per process listens on a thread of
its own and fans each notification out in memory, so a waiting request costs no query.

A signal carries no truth: subscribers re-read the tables. While the listening connection is down
(and on SQLite, where other processes cannot signal), :attr:`Notifier.cross_process` is False and
waiters fall back to polling.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence

from darkroom.store.database import Database, Notification

log = logging.getLogger("darkroom.notify")

JOBS = "darkroom_jobs"  # payload: the model of a job that became claimable
CHANGES = "darkroom_changes"  # payload: the id of a project whose status changed
AUTH = "darkroom_auth"  # payload: an account id whose keys or tier changed
WEBHOOKS = "darkroom_webhooks"  # payload: what wrote or resent deliveries (a project, a delivery)
CHANNELS = (JOBS, CHANGES, AUTH, WEBHOOKS)

Subscriber = Callable[[str], None]


class Notifier:
    def __init__(
        self,
        db: Database,
        subscribers: Mapping[str, Sequence[Subscriber]],
        *,
        listening: threading.Event | None = None,
        on_reconnect: Sequence[Callable[[], None]] = (),
        reconnect_seconds: float = 1.0,
    ) -> None:
        """``subscribers[channel]`` are called with the payload of each signal on ``channel``,
        from any thread: each must only hand the payload on (set an event, schedule a callback),
        never block. ``listening`` is set while other processes' signals reach this one (the
        waiters that poll meanwhile read it); ``on_reconnect`` are called (from the listening
        thread) each time the connection is (re)established, so that waiters re-read what they
        may have missed while it was down."""
        unknown = set(subscribers) - set(CHANNELS)
        if unknown:
            raise ValueError(f"no such channel: {', '.join(sorted(unknown))}")
        self.db = db
        self.reconnect_seconds = reconnect_seconds
        self._subscribers = {channel: tuple(subs) for channel, subs in subscribers.items()}
        self._listening = listening if listening is not None else threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_reconnect = tuple(on_reconnect)
        # Signals written in a transaction reach this process's subscribers once it commits.
        db.on_commit = self._committed

    @property
    def cross_process(self) -> bool:
        """Whether other processes' signals reach this one now (else: poll)."""
        return self._listening.is_set()

    def publish(self, channel: str, payload: str) -> None:
        """Signal this process's subscribers now (for changes with no transaction)."""
        self._dispatch(channel, payload)

    def _committed(self, notifications: list[Notification]) -> None:
        for channel, payload in notifications:
            self._dispatch(channel, payload)

    def _dispatch(self, channel: str, payload: str) -> None:
        for subscriber in self._subscribers.get(channel, ()):
            try:
                subscriber(payload)
            except Exception:  # one subscriber's bug must not silence the others
                log.exception("a %s subscriber failed", channel)

    # -- PostgreSQL: one listening connection per process --------------------------------------

    def start(self, wait: float = 5.0) -> None:
        """Start listening (PostgreSQL), and wait up to ``wait`` seconds for the connection, so
        that a node starts with its signals on (it polls meanwhile if the wait runs out)."""
        if self.db.is_sqlite or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._listen, name="darkroom-listen", daemon=True)
        self._thread.start()
        self._listening.wait(wait)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._listening.clear()

    def _listen(self) -> None:
        import psycopg  # the PostgreSQL driver, present wherever a PostgreSQL URL is used

        failures = 0  # in a row: one warning per outage, not one per reconnect attempt
        while not self._stop.is_set():
            try:
                with psycopg.connect(_libpq_url(self.db.url), autocommit=True) as conn:
                    for channel in CHANNELS:
                        conn.execute(f"LISTEN {channel}")
                    self._listening.set()
                    if failures:
                        log.info("notifications are back after %d reconnect attempts", failures)
                    failures = 0
                    for hook in self.on_reconnect:
                        hook()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._dispatch(note.channel, note.payload)
            except Exception as exc:
                if self._stop.is_set():
                    break
                failures += 1
                log.log(
                    logging.WARNING if failures == 1 else logging.DEBUG,
                    "lost the notification connection (%s); polling until it is back",
                    type(exc).__name__,
                )
            self._listening.clear()
            self._stop.wait(self.reconnect_seconds)


def _libpq_url(url: str) -> str:
    """The SQLAlchemy URL as libpq takes it (no ``+driver``)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)
