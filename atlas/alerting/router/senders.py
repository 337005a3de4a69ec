"""Where the router's senders run: the `Senders` seam.

- `ThreadSenders`: one ChannelWorker per channel and the Bookkeeper, as threads of the calling
  process (`atlas up`, tests that drive an AlertRouter directly, and the senders' own process).
- `SenderProcess` (atlas.alerting.router.senderproc): the same ThreadSenders in a child process of
  `atlas alert-router`, so intake and delivery do not share one GIL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from atlas.alerting.router.bookkeeping import Bookkeeper
from atlas.alerting.router.channels.base import Channel
from atlas.alerting.router.sender import ChannelWorker, RetryPolicy
from atlas.store.outbox import Outbox


class Senders(Protocol):
    @property
    def started(self) -> bool:
        """True once the senders are draining the outbox."""

    def start(self) -> None:
        """Release the leases a previous process left, then start sending."""

    def wake(self, channels: Collection[str] | None = None) -> None:
        """New deliveries for `channels` (None: any) were committed: look now, not at the next poll."""

    def stop(self, timeout: float = 15.0) -> None:
        """Finish the sends under way, commit their outcomes, close the channels."""


class ThreadSenders:
    def __init__(
        self,
        channels: Sequence[Channel],
        outbox: Outbox,
        tally: Callable[[str, str, float], None],
        retry: RetryPolicy,
        *,
        lease_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbox = outbox
        self.channels = list(channels)
        self._books = Bookkeeper(outbox, committed=self.wake)
        self.workers = [
            ChannelWorker(
                c, outbox, tally, retry, lease_seconds=lease_seconds, clock=clock, record=self._books.submit
            )
            for c in self.channels
        ]
        self._stop = threading.Event()
        self._started = False

    @property
    def started(self) -> bool:
        return self._started

    def start(self) -> None:
        self.outbox.release_leases()
        for worker in self.workers:
            worker.start(self._stop)
        self._started = True

    def wake(self, channels: Collection[str] | None = None) -> None:
        for worker in self.workers:
            if channels is None or worker.channel.name in channels:
                worker.wake.set()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        self.wake()
        for worker in self.workers:
            worker.join(timeout)
        self._books.close(timeout)  # after the senders: their last outcomes are committed too
        for channel in self.channels:
            channel.close()
