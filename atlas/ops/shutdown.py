"""SIGTERM and SIGINT mean "stop cleanly, exit 0" for every long-running process, from its start.

Each process installs one `Shutdown` before it starts anything: a signal that arrives while parts
are still starting is kept and stops them as soon as they register, instead of killing the
process with the default action (143) or a KeyboardInterrupt (click's "Aborted!", exit 1).
uvicorn, run in the main thread, swaps in its own handlers while it serves and re-raises the
signal when it returns; these handlers take it then, so the re-raise does no harm.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from atlas.logging import get_logger

log = get_logger("atlas.ops")


class Shutdown:
    def __init__(self) -> None:
        self.requested = threading.Event()
        self._callbacks: list[Callable[[], None]] = []

    def install(self) -> Shutdown:
        """Take SIGTERM and SIGINT in this (main) thread; returns self."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        return self

    def _on_signal(self, signum: int, _frame: object) -> None:
        if not self.requested.is_set():
            log.info("signal received; stopping", signal=signal.Signals(signum).name)
        self.requested.set()
        for callback in list(self._callbacks):
            callback()

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Call `callback` on a stop signal (at once if one came already). Must be signal-safe:
        setting a flag or writing to a pipe, as Engine.stop does."""
        self._callbacks.append(callback)
        if self.requested.is_set():
            callback()
