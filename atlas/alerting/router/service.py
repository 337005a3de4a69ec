"""The router: accepts notifications into the outbox and runs one sender worker per channel."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from atlas.alerting.router.channels.base import Channel
from atlas.alerting.router.metrics import RouterMetrics
from atlas.alerting.router.payload import Notification
from atlas.alerting.router.routing import AlertPolicy, ChannelPolicy, plan
from atlas.alerting.router.sender import ChannelWorker, RetryPolicy
from atlas.store.outbox import Accepted, Outbox


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
    ) -> None:
        self.outbox = outbox
        self.channels = [c for c, _ in channels]
        self.policies = [p for _, p in channels]
        self.alerts = alerts
        self.metrics = metrics
        self.clock = clock
        self.workers = [
            ChannelWorker(c, outbox, metrics, retry, lease_seconds=lease_seconds, clock=clock)
            for c in self.channels
        ]
        self._stop = threading.Event()
        self.started = False
        metrics.watch(outbox, [p.name for p in self.policies])

    def accept(self, notification: Notification) -> Accepted:
        """Commit `notification` and its deliveries; raises StoreError when it cannot be stored."""
        plans = plan(notification, self.policies, self.alerts)
        accepted = self.outbox.accept(
            notification.dedupe_key,
            notification.group_key,
            notification.status,
            notification.as_dict(),
            plans,
            self.clock(),
        )
        self.metrics.received.labels(notification.status).inc()
        if accepted.duplicate:
            self.metrics.dedupe_hits.inc()
        else:
            for worker in self.workers:
                if accepted.deliveries.get(worker.channel.name) == "pending":
                    worker.wake.set()
        return accepted

    def start(self) -> None:
        """Release the leases a previous process left, then start the senders."""
        self.outbox.release_leases()
        for worker in self.workers:
            worker.start(self._stop)
        self.started = True

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        for worker in self.workers:
            worker.wake.set()
        for worker in self.workers:
            worker.join(timeout)
        for channel in self.channels:
            channel.close()
