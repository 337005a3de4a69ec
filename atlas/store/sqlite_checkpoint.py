"""WAL checkpoints on a thread of their own, off the writers' commits.

By default SQLite checkpoints inside the commit that pushes the WAL past 1,000 pages: that commit
copies the WAL into the database file and, at synchronous=NORMAL or FULL, waits for its fsync.
Measured on the engine's store work (1 KB documents, NORMAL): a fifth to a third of the wall time,
paid by whichever writer was unlucky, the engine's commit or an API request's group commit.

Here a daemon thread runs `PRAGMA wal_checkpoint(PASSIVE)` on its own connection a moment after
writes (at most every `interval` seconds while they go on); SQLite releases the GIL while it copies
and syncs, so the writers carry on meanwhile. PASSIVE never waits for locks and never blocks a
writer or a reader. The writers' own automatic checkpoint stays as a backstop at SAFETY_PAGES,
bounding the WAL should this thread fall behind (readers pinning old snapshots hold the WAL back
either way, as before).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from atlas.logging import get_logger

log = get_logger("atlas.store")

# Writers checkpoint themselves past this many WAL pages (16 MiB at 4 KiB pages): only when the
# thread below has not kept up.
SAFETY_PAGES = 4096
INTERVAL_SECONDS = 0.2


class WalCheckpointer:
    """Checkpoints the WAL of `path` after writes, on a thread started by the first `wrote()`."""

    def __init__(self, path: Path, interval: float = INTERVAL_SECONDS) -> None:
        self.path, self.interval = path, interval
        self.checkpoints = 0  # PASSIVE checkpoints run (tests and curiosity)
        self._wrote = threading.Event()
        self._stop = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def wrote(self) -> None:
        """A write transaction committed: checkpoint soon. Cheap: called after every commit."""
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._closing:
                    thread = threading.Thread(target=self._run, name="atlas-wal-checkpoint", daemon=True)
                    thread.start()
                    self._thread = thread
        self._wrote.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        """Stop the thread (after its current checkpoint); the last connection's close checkpoints."""
        with self._lock:
            self._closing = True
            thread = self._thread
        self._stop.set()
        self._wrote.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            while True:
                self._wrote.wait()
                # Let writes gather: one checkpoint (one fsync of the database file) for many commits.
                if self._stop.wait(self.interval):
                    return
                self._wrote.clear()
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self.checkpoints += 1
        except sqlite3.Error as exc:
            # The writers' own checkpoints (SAFETY_PAGES) still bound the WAL.
            log.warning("background WAL checkpoints stopped", path=str(self.path), error=str(exc))
        finally:
            if conn is not None:
                conn.close()
