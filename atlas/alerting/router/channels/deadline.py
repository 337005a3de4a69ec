"""A whole delivery attempt bounded by its timeout, not each socket operation.

ATLAS_ROUTER_SEND_TIMEOUT_SECONDS (or a channel's `timeout`) is "the timeout of one delivery
attempt", but http.client and smtplib apply a socket timeout to each operation: a receiver that
sends a byte every few seconds, or a relay that answers each SMTP command just in time, kept a
sender busy for as long as it liked, and with every sender of a channel held so, no notification
of that channel went out. `DEADLINES.watch(seconds)` gives the sender a `Watch`; the channel names
the connection it is using (`watch.target`, anything with a `sock`), and one thread per process
shuts that socket down when the attempt outlives its deadline, so the blocked read or write returns
at once and the channel reports a timeout (`watch.expired`).
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Watch:
    """One attempt under a deadline. `target`: what the attempt is using now (an HTTPConnection,
    an SMTP session: anything with a `sock`), set by the channel as it goes."""

    __slots__ = ("done", "expired", "seconds", "target")

    def __init__(self, seconds: float) -> None:
        self.target: Any = None
        self.done = False
        self.expired = False
        self.seconds = seconds


class Deadlines:
    """The deadlines of the attempts under way in this process, and the thread that enforces
    them (started on first use, and again in a forked child, which inherits no threads)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Watch]] = []
        self._order = itertools.count()  # ties in deadline: never compare two Watch objects
        self._pid = 0

    @contextmanager
    def watch(self, seconds: float) -> Iterator[Watch]:
        w = Watch(seconds)
        entry = (time.monotonic() + seconds, next(self._order), w)
        with self._cond:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="router-send-deadlines", daemon=True).start()
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:  # sooner than what the thread waits for
                self._cond.notify()
        try:
            yield w
        finally:
            with self._cond:  # after this the thread leaves the target alone (it checks under the lock)
                w.done = True

    def _run(self) -> None:
        with self._cond:
            while True:
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, _, w = self._heap[0]
                if w.done:
                    heapq.heappop(self._heap)
                    continue
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                w.expired = True
                _shut(getattr(w.target, "sock", None))


def _shut(sock: socket.socket | None) -> None:
    """Shut `sock` down for reading and writing: a thread blocked on it returns at once. The base
    class's method, so that on a TLS socket the TLS state the blocked thread is using stays as it
    is (SSLSocket.shutdown drops it first)."""
    if sock is None:
        return
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # closed already


DEADLINES = Deadlines()
# A child forked while another thread held the lock would wait on it forever: start afresh.
os.register_at_fork(after_in_child=DEADLINES.reset)


def expired_error_message(watch: Watch) -> str:
    return f"timeout: the attempt took longer than {watch.seconds:g} s"
