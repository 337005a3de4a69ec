"""The router: accepts notifications into the outbox; its senders (threads here, or a process of
their own: atlas.alerting.router.senders) drain it."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from atlas.alerting.router.channels.base import Channel
from atlas.alerting.router.metrics import RouterMetrics
from atlas.alerting.router.payload import Notification
from atlas.alerting.router.routing import AlertPolicy, ChannelPolicy, plan
from atlas.alerting.router.sender import RetryPolicy
from atlas.alerting.router.senders import Senders, ThreadSenders
from atlas.store.outbox import Accepted, Outbox, Plan

_Item = tuple[str, str, str, dict[str, Any], Sequence[Plan]]
_MAX_BATCH = 256


class GroupCommit:
    """Concurrent accepts share one transaction and one fsync: a burst of webhooks costs a few
    commits instead of one each (bench/router.py: per-notification fsyncs capped the accept rate)."""

    def __init__(self, outbox: Outbox, clock: Callable[[], float]) -> None:
        self.outbox, self.clock = outbox, clock
        self._queue: queue.SimpleQueue[tuple[_Item, Future[Accepted]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="atlas-router-commit", daemon=True)
        self._thread.start()

    def submit(self, item: _Item) -> Accepted:
        """Blocks until `item` is committed; raises what the commit raised (StoreError)."""
        future: Future[Accepted] = Future()
        self._queue.put((item, future))
        return future.result()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=15)

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            batch = [first]
            stop = False
            while len(batch) < _MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            try:
                results = self.outbox.accept_many([item for item, _ in batch], self.clock())
            except Exception as exc:  # every waiter gets the error: each answers 5xx
                for _, future in batch:
                    future.set_exception(exc)
            else:
                for (_, future), result in zip(batch, results, strict=True):
                    future.set_result(result)
            if stop:
                return


class AlertRouter:
    def __init__(
        self,
        outbox: Outbox,
        channels: Sequence[tuple[Channel, ChannelPolicy]],
        alerts: dict[str, AlertPolicy],
        metrics: RouterMetrics,
        retry: RetryPolicy,
        *,
        lease_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
        senders: Senders | None = None,
    ) -> None:
        """`senders` drain the outbox; by default threads in this process sending through
        `channels`. With other senders, `channels` only name the channels (their policies route)."""
        self.outbox = outbox
        self.channels = [c for c, _ in channels]
        self.policies = [p for _, p in channels]
        self.alerts = alerts
        self.metrics = metrics
        self.clock = clock
        self.senders = senders or ThreadSenders(
            self.channels, outbox, metrics.tally, retry, lease_seconds=lease_seconds, clock=clock
        )
        self._commit = GroupCommit(outbox, clock)
        metrics.watch(outbox, [p.name for p in self.policies])

    @property
    def started(self) -> bool:
        return self.senders.started

    def accept(self, notification: Notification) -> Accepted:
        """Commit `notification` and its deliveries; raises StoreError when it cannot be stored."""
        plans = plan(notification, self.policies, self.alerts)
        accepted = self._commit.submit(
            (
                notification.dedupe_key,
                notification.group_key,
                notification.status,
                notification.as_dict(),
                plans,
            )
        )
        self.metrics.received.labels(notification.status).inc()
        if accepted.duplicate:
            self.metrics.dedupe_hits.inc()
        else:
            self.senders.wake([c for c, state in accepted.deliveries.items() if state == "pending"])
        return accepted

    def start(self) -> None:
        """Start the senders (they release the leases a previous process left first)."""
        self.senders.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._commit.close()
        self.senders.stop(timeout)
