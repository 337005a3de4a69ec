"""WAL checkpoints on a thread of their own, off the writers' commits.

By default SQLite checkpoints inside the commit that pushes the WAL past 1,000 pages: that commit
copies the WAL into the database file and, at synchronous=NORMAL or FULL, waits for its fsync.
Measured on the engine's store work (1 KB documents, NORMAL): a fifth to a third of the wall time,
paid by whichever writer was unlucky, the engine's commit or an API request's group commit.

Here a daemon thread runs `PRAGMA wal_checkpoint(PASSIVE)` on its own connection a moment after
writes (at most every `interval` seconds while they go on, repeated while commits land during it:
see `_checkpoint`); SQLite releases the GIL while it copies and syncs, so the writers carry on
meanwhile. PASSIVE never waits for locks and never blocks a writer or a reader. The writers' own
automatic checkpoint stays at SAFETY_PAGES: it bounds the WAL, and under a writer that never pauses
it is what restarts the WAL (see SAFETY_PAGES). Readers pinning old snapshots hold the WAL back
either way, as before.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from atlas.logging import get_logger

log = get_logger("atlas.store")

# Writers checkpoint themselves past this many WAL pages (64 MiB at 4 KiB pages). Under a writer
# that never pauses (the engine draining a queue) this is also the only way the WAL starts over from
# its beginning: SQLite restarts it only in a write transaction that began with every frame already
# checkpointed, and the thread's checkpoint always ends behind the commits made while it ran. So the
# WAL grows to this size between restarts, and each restart costs that writer a checkpoint and its
# fsyncs in its commit (26-65 ms measured). At 4,096 pages that came every ~3,000 settled 1 KB
# documents: 16,384 made the store's settling 15-20% faster over 60,000 documents (issue 18).
SAFETY_PAGES = 16384
INTERVAL_SECONDS = 0.2
CATCH_UP_ROUNDS = 4  # more checkpoints after one, while commits land meanwhile (_checkpoint)
RETRY_SECONDS = 60.0  # after the thread failed (e.g. the disk full): when a write may start another


class WalCheckpointer:
    """Checkpoints the WAL of `path` after writes, on a thread started by the first `wrote()`.

    `close()` stops the thread; a later `wrote()` (a store used again after close) starts another.
    The thread refers to this object, never to the store: a store dropped without close() stops
    it through `stop_soon` (SQLiteConnections registers it with weakref.finalize), instead of
    leaving a thread and an open connection to the file for the rest of the process.
    """

    def __init__(self, path: Path, interval: float = INTERVAL_SECONDS, retry: float = RETRY_SECONDS) -> None:
        self.path, self.interval, self.retry = path, interval, retry
        self.checkpoints = 0  # PASSIVE checkpoints run (tests and curiosity)
        self.caught_up = 0  # rounds whose last checkpoint found nothing new (_checkpoint)
        # The running thread's two events, replaced when it is told to stop: a thread started
        # later (the store used again) never shares them with one still finishing its checkpoint.
        self._wrote = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._retry_at = 0.0  # after a failed thread: no new one before this (monotonic)

    def wrote(self) -> None:
        """A write transaction committed: checkpoint soon. Cheap: called after every commit."""
        if self._thread is None and time.monotonic() >= self._retry_at:
            with self._lock:
                if self._thread is None:
                    thread = threading.Thread(
                        target=self._run,
                        args=(self._wrote, self._stop),
                        name="atlas-wal-checkpoint",
                        daemon=True,
                    )
                    thread.start()
                    self._thread = thread
        self._wrote.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop_soon(self) -> threading.Thread | None:
        """Tell the thread to end (after its current checkpoint) without waiting; returns it."""
        with self._lock:
            thread, self._thread = self._thread, None
            wrote, self._wrote = self._wrote, threading.Event()
            stop, self._stop = self._stop, threading.Event()
        stop.set()
        wrote.set()
        return thread

    def close(self) -> None:
        """Stop the thread (after its current checkpoint); the last connection's close checkpoints."""
        thread = self.stop_soon()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        """One PASSIVE checkpoint, then up to CATCH_UP_ROUNDS more while commits landed during
        the last one (the WAL's frame count grew): each copies only those commits' frames, so it
        is short, and the one that finds the WAL as it left it reached the WAL's end.

        Why: SQLite fsyncs the database file only in a checkpoint that reaches the WAL's end. Under
        a writer that never pauses a lone checkpoint never does, so every page it copied waited,
        unsynced, for the writer's own checkpoint at SAFETY_PAGES, which then flushed them all in
        that writer's commit: 140-190 ms at 16,384 pages, measured; 40-65 ms with these rounds,
        and the mean commit of 256 documents 7.8-8.4 -> 4.1-5.0 ms (issue 18)."""
        frames = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
        self.checkpoints += 1
        for _ in range(CATCH_UP_ROUNDS):
            busy, now_frames, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
            if busy or now_frames == frames:
                self.caught_up += not busy
                return
            if now_frames < frames:
                return  # a writer restarted the WAL meanwhile: the last round reached its end
            frames = now_frames

    def _run(self, wrote: threading.Event, stop: threading.Event) -> None:
        conn: sqlite3.Connection | None = None
        try:
            # mode=rw: never create the file (it exists once a write committed; if it was removed
            # meanwhile, checkpointing an empty new file would only hide that).
            uri = f"{self.path.resolve().as_uri()}?mode=rw"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            while True:
                wrote.wait()
                # Let writes gather: one checkpoint (one fsync of the database file) for many commits.
                if stop.wait(self.interval):
                    return
                wrote.clear()
                self._checkpoint(conn)
        except sqlite3.Error as exc:
            # The writers' own checkpoints (SAFETY_PAGES) still bound the WAL meanwhile; a write
            # after RETRY_SECONDS starts a new thread.
            log.warning("background WAL checkpoints stopped", path=str(self.path), error=str(exc))
            with self._lock:
                self._retry_at = time.monotonic() + self.retry
                if self._stop is stop:  # still this thread's turn: let a later write start another
                    self._thread = None
        finally:
            if conn is not None:
                conn.close()
