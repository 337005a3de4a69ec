"""The router's metric families (defined in the catalog, atlas.observability.metrics)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from atlas.errors import StoreError
from atlas.observability.metrics import build, family
from atlas.store.outbox import Outbox


class OutboxCollector(Collector):
    """Outbox depth and oldest pending age per channel, read from the outbox at scrape time."""

    def __init__(
        self, outbox: Outbox, channels: Sequence[str], clock: Callable[[], float] = time.time
    ) -> None:
        self.outbox, self.channels, self.clock = outbox, channels, clock

    def collect(self) -> Iterable[Metric]:
        depth = family("atlas_router_outbox_depth")
        oldest = family("atlas_router_outbox_oldest_pending_seconds")
        try:
            stats = self.outbox.pending_stats(self.clock())
        except StoreError:
            return  # the scrape shows the families missing; /health says why
        for channel in sorted({*self.channels, *stats}):
            n, age = stats.get(channel, (0, 0.0))
            depth.add_metric([channel], n)
            oldest.add_metric([channel], age)
        yield depth
        yield oldest


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.received = build(registry, "atlas_router_notifications_received_total")
        self.deliveries = build(registry, "atlas_router_deliveries_total")
        self.delivery_seconds = build(registry, "atlas_router_delivery_seconds")
        self.retries = build(registry, "atlas_router_retries_total")
        self.dedupe_hits = build(registry, "atlas_router_dedupe_hits_total")

    def tally(self, channel: str, outcome: str, seconds: float) -> None:
        """Count one delivery attempt: `sent` (`seconds` from receipt to delivered), `failed`
        (a transient failure, retried) or `dead`. The senders call this, in their own process
        through its pipe (atlas.alerting.router.senders) or here directly."""
        self.deliveries.labels(channel, outcome).inc()
        if outcome == "sent":
            self.delivery_seconds.labels(channel).observe(max(0.0, seconds))
        elif outcome == "failed":
            self.retries.labels(channel).inc()

    def watch(self, outbox: Outbox, channels: Sequence[str]) -> None:
        self.registry.register(OutboxCollector(outbox, channels))
