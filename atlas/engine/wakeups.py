"""Wake an idle engine when work is enqueued, on stores that can tell (PostgreSQL's LISTEN/NOTIFY).

A store with `wait_for_work(timeout) -> bool` blocks until an enqueue commits; a thread waits on
it and calls `on_work`, which wakes the engine's loop to claim at once instead of at its next poll.
Stores without it (SQLite, where every process is on one host and the poll is cheap) are polled
as before. The poll stays on PostgreSQL too: a lost notification (a reconnect) costs one interval.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from atlas.errors import StoreError
from atlas.logging import get_logger

log = get_logger(__name__)
# How long one wait blocks: bounds how long stopping the watcher takes.
WAIT_SECONDS = 0.5
RETRY_SECONDS = 1.0


class WorkWatcher:
    def __init__(self, wait_for_work: Callable[[float], bool], on_work: Callable[[], None]) -> None:
        self._wait = wait_for_work
        self._on_work = on_work
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="atlas-work-watcher", daemon=True)

    @classmethod
    def for_store(cls, store: Any, on_work: Callable[[], None]) -> WorkWatcher | None:
        """A started watcher, subscribed before this returns; None when the store cannot notify."""
        wait = getattr(store, "wait_for_work", None)
        if wait is None:
            return None
        watcher = cls(wait, on_work)
        try:
            if wait(0):  # subscribes now, so no enqueue committed after this returns is missed
                on_work()
        except StoreError as exc:
            log.warning("cannot subscribe to enqueue notifications; polling only", error=str(exc))
        watcher._thread.start()
        return watcher

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                if self._wait(WAIT_SECONDS):
                    self._on_work()
            except StoreError as exc:
                log.warning("waiting for enqueue notifications failed; retrying", error=str(exc))
                self._stopped.wait(RETRY_SECONDS)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=WAIT_SECONDS + 5)
