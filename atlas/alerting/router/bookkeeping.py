"""Batched bookkeeping: the senders' outcomes (sent, retry, defer, dead) written by one thread.

Every send used to commit its own outcome on the outbox's one bookkeeping connection, so a
burst's sends queued behind each other's transactions (and behind the intake's FULL commits,
which hold SQLite's write lock during their fsync): py-spy on bench/router.py showed the send
threads mostly waiting for that lock. Here a send hands its outcome over and moves on; one
thread commits whatever has gathered while the previous commit ran, in one transaction.

Safety is unchanged: a delivery stays leased until its outcome is committed, so nothing claims it
meanwhile; a router killed before the commit sends it again after restart (at-least-once), as it
would have when killed between the send and its own commit. Outcomes whose commit fails are
logged and dropped the same way: their leases run out and the deliveries are sent again.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from atlas.errors import StoreError
from atlas.logging import get_logger
from atlas.store.outbox import Outbox, Outcome

log = get_logger("atlas.router")
_MAX_BATCH = 512


class Bookkeeper:
    def __init__(self, outbox: Outbox, committed: Callable[[], None] = lambda: None) -> None:
        """`committed` runs after each commit: a group's next delivery becomes claimable only
        once the one before it is recorded, so the senders are woken to look."""
        self.outbox = outbox
        self.committed = committed
        self._queue: queue.SimpleQueue[Outcome | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="atlas-router-bookkeeping", daemon=True)
        self._thread.start()

    def submit(self, outcome: Outcome) -> None:
        """Queue `outcome` for the next commit; returns at once."""
        self._queue.put(outcome)

    def close(self, timeout: float = 15.0) -> None:
        """Commit everything submitted so far, then stop."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        done = False
        while not done:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < _MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    done = True
                    break
                batch.append(more)
            try:
                self.outbox.record(batch)
            except StoreError as exc:
                log.error("outbox update failed", outcomes=len(batch), error=str(exc))
            else:
                self.committed()
