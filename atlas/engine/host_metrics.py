"""Per-host metrics in the engine's registry, from the gates of its worker processes.

Each worker's HostGate (atlas.pipeline.hosts) lives in that process; about once a second a worker
sends `gate.snapshot()` to the supervisor, which publishes the sum over workers: breaker state
(the worst any worker sees), concurrency limit and in-flight (summed), and counters (the growth of
each worker's cumulative counts; a respawned worker starts again from zero). A host no worker
tracks any more loses its gauge series, so series stay bounded by the workers' LRUs.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from atlas.observability.metrics import build


class HostMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.state = build(registry, "atlas_host_breaker_state")
        self.transitions = build(registry, "atlas_host_breaker_transitions_total")
        self.limit = build(registry, "atlas_host_concurrency_limit")
        self.in_flight = build(registry, "atlas_host_in_flight")
        self.rate_limited = build(registry, "atlas_host_rate_limited_total")
        self.global_limit = build(registry, "atlas_fetch_concurrency_limit")
        self._latest: dict[int, dict[str, Any]] = {}
        self._shown: set[str] = set()

    def update(self, slot: int, snap: dict[str, Any]) -> None:
        """Take worker `slot`'s snapshot and republish the totals."""
        before = self._latest.get(slot, {})
        for key, family in (("transitions", self.transitions), ("rate_limited", self.rate_limited)):
            old = before.get(key, {})
            for labels, value in snap[key].items():
                grown = value - old.get(labels, 0)
                if grown > 0:
                    family.labels(*labels).inc(grown)
        self._latest[slot] = snap
        self._publish()

    def forget(self, slot: int) -> None:
        """The worker in `slot` is gone: its hosts' gauges no longer count it."""
        if self._latest.pop(slot, None) is not None:
            self._publish()

    def _publish(self) -> None:
        totals: dict[str, list[int]] = {}
        for snap in self._latest.values():
            for host, (state, limit, in_flight) in snap["hosts"].items():
                t = totals.setdefault(host, [0, 0, 0])
                t[0], t[1], t[2] = max(t[0], state), t[1] + limit, t[2] + in_flight
        for host, (state, limit, in_flight) in totals.items():
            self.state.labels(host).set(state)
            self.limit.labels(host).set(limit)
            self.in_flight.labels(host).set(in_flight)
        for host in self._shown - set(totals):
            for family in (self.state, self.limit, self.in_flight):
                try:
                    family.remove(host)
                except KeyError:
                    pass
        self._shown = set(totals)
        self.global_limit.set(sum(s["global_limit"] for s in self._latest.values()))
