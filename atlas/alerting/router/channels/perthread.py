"""One open connection per sending thread, and all of them, to close them at shutdown.

The webhook's and Slack's HTTP connections and the email channel's SMTP sessions are kept alive
between sends, each by the sender thread that opened it (neither http.client nor smtplib may be
used by two threads at once); `close()` of the channel reaches every thread's.
"""

from __future__ import annotations

import threading
from typing import Generic, Protocol, TypeVar


class _Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


class PerThread(Generic[C]):
    def __init__(self) -> None:
        self._local = threading.local()
        self._all: set[C] = set()
        self._lock = threading.Lock()

    def current(self) -> C | None:
        """This thread's open connection, if any."""
        conn: C | None = getattr(self._local, "conn", None)
        return conn

    def keep(self, conn: C) -> C:
        """Make `conn` this thread's connection."""
        with self._lock:
            self._all.add(conn)
        self._local.conn = conn
        return conn

    def drop(self) -> None:
        """Close this thread's connection (the next send opens another)."""
        conn = self.current()
        self._local.conn = None
        if conn is not None:
            with self._lock:
                self._all.discard(conn)
            conn.close()

    def take_all(self) -> set[C]:
        """Every thread's connection, for the caller to close: none is kept any more."""
        with self._lock:
            taken, self._all = self._all, set()
        return taken
