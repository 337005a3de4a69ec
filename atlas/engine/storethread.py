"""The supervisor's store thread: claims and commits run on it, one at a time, off the loop.

The supervisor's one thread was the engine's bottleneck, and about half its time went to SQLite
running statements (py-spy), which it does without the GIL. With claims and commits on a thread
of their own, the loop reads results, dispatches and answers its workers while a commit writes,
on the machine's other core.

One thread, one job at a time: a claim never waits on the engine's own commit for the database
lock (SQLite's busy handler sleeps in steps of milliseconds), and transitions commit in the order
they were handed in. Decisions stay on the loop's thread: a job's callback runs there, when the
loop calls `deliver()` after the thread woke it (`wake`).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

# What a job's callback gets: the job's return value, or None and the exception it raised.
Callback = Callable[[Any, BaseException | None], None]


class StoreThread:
    """Runs submitted store calls in order on one daemon thread; their callbacks on the caller's.

    With `threads` > 1 (a database that takes concurrent writers: PostgreSQL), that many threads
    take the submitted calls in order and run them side by side, so two transactions use two
    cores of the database server; the callers decide which calls may overlap (the engine: a
    commit and claims, never two commits)."""

    def __init__(self, wake: Callable[[], None], name: str = "atlas-engine-store", threads: int = 1) -> None:
        self._wake = wake
        self._jobs: deque[tuple[Callable[[], Any], Callback] | None] = deque()
        self._finished: deque[tuple[Callback, Any, BaseException | None]] = deque()
        self._cond = threading.Condition()
        self._threads = [
            threading.Thread(target=self._run, name=name if i == 0 else f"{name}-{i + 1}", daemon=True)
            for i in range(threads)
        ]
        self.in_flight = 0  # submitted and not yet delivered (the loop's thread only)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, job: Callable[[], Any], callback: Callback) -> None:
        """Run `job` on the thread after those already submitted; `callback(value, error)` runs
        on the thread that calls deliver() or wait_idle()."""
        self.in_flight += 1
        with self._cond:
            self._jobs.append((job, callback))
            self._cond.notify_all()

    def deliver(self) -> None:
        """Run the callbacks of the jobs that have finished (raises what a callback raises)."""
        while self._finished:
            callback, value, error = self._finished.popleft()
            self.in_flight -= 1
            callback(value, error)

    def wait_idle(self) -> None:
        """Wait for every submitted job and run its callback (the drain, a worker's death)."""
        while self.in_flight:
            with self._cond:
                while not self._finished:
                    self._cond.wait()
            self.deliver()

    def stop(self) -> None:
        """Finish the jobs already submitted (their callbacks do not run) and end the thread."""
        alive = [t for t in self._threads if t.is_alive()]
        if not alive:
            return
        with self._cond:
            self._jobs.extend([None] * len(self._threads))
            self._cond.notify_all()
        for thread in alive:
            thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs:
                    self._cond.wait()
                entry = self._jobs.popleft()
            if entry is None:
                return
            job, callback = entry
            value: Any = None
            error: BaseException | None = None
            try:
                value = job()
            except BaseException as exc:  # handed to the loop's thread, which decides (and re-raises bugs)
                error = exc
            with self._cond:
                self._finished.append((callback, value, error))
                self._cond.notify_all()
            self._wake()
