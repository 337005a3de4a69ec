"""The engine's leases: heartbeats that keep them, the deadline workers hold to, reaping others'.

Every lease this engine holds is extended by one heartbeat (one UPDATE for all of them), every
third of a lease. Workers get the resulting deadline: past it, a worker still holding jobs exits
(atlas.engine.worker), so a hung supervisor never leaves an item running that another engine may
already have claimed. Leases of engines that stopped beating are taken back by whichever engine
reaps first; an item whose lease lapsed too often is dead-lettered by the store.
"""

from __future__ import annotations

from collections.abc import Callable

from atlas.engine.pool import STOPPED, heartbeat_value
from atlas.engine.worker import WATCHDOG_SECONDS
from atlas.errors import StoreError
from atlas.logging import get_logger
from atlas.observability.metrics import EngineMetrics
from atlas.settings import Settings
from atlas.store.base import Store
from atlas.store.models import HEARTBEAT_KEY_PREFIX

log = get_logger("atlas.engine")

# An engine that has not beaten for a day is gone (its own stop deletes its key): forget it.
STALE_HEARTBEAT_SECONDS = 86_400.0


class Leases:
    """The lease side of one engine (`owner`) on `store`."""

    def __init__(
        self,
        store: Store,
        owner: str,
        settings: Settings,
        metrics: EngineMetrics,
        wall: Callable[[], float],
    ) -> None:
        self.store, self.owner, self.settings, self.metrics, self.wall = store, owner, settings, metrics, wall
        # Until when every lease we hold is known good: the last heartbeat that reached the
        # database plus a lease, less a margin for the commit that must land before it lapses.
        self.deadline = 0.0

    @property
    def beat_seconds(self) -> float:
        return self.settings.lease_seconds / 3

    @property
    def reap_seconds(self) -> float:
        return max(0.5, self.settings.lease_seconds / 4)

    def beat(self, health: tuple[str, str]) -> bool:
        """Extend our leases and write our heartbeat key with `health`; moves `deadline` on.
        Returns False (logged) when the database could not be reached."""
        sent_at = self.wall()
        try:
            self.store.heartbeat(self.owner, self.settings.lease_seconds)
            self.store.kv_set(HEARTBEAT_KEY_PREFIX + self.owner, heartbeat_value(self.wall(), *health))
        except StoreError as exc:
            log.error("heartbeat failed", error=str(exc))
            return False
        lease = self.settings.lease_seconds
        # The margin covers the worker's watchdog period and a second for our commit to land.
        self.deadline = sent_at + lease - min(lease * 0.25, 1.0 + WATCHDOG_SECONDS)
        return True

    def publish(self, health: tuple[str, str]) -> None:
        """Write `health` into our heartbeat key between beats (the API's health checks read it)."""
        try:
            self.store.kv_set(HEARTBEAT_KEY_PREFIX + self.owner, heartbeat_value(self.wall(), *health))
        except StoreError as exc:
            log.error("publishing engine health failed", error=str(exc))

    def reap(self) -> None:
        """Take back expired leases (any engine's) and forget heartbeat keys of engines long gone."""
        try:
            reaped = self.store.reap_expired(self.settings.max_lease_expiries)
            self.store.kv_prune(HEARTBEAT_KEY_PREFIX, STALE_HEARTBEAT_SECONDS)
        except StoreError as exc:
            log.error("reaping expired leases failed", error=str(exc))
            return
        if reaped:
            self.metrics.leases_expired.inc(reaped)
            log.warning("expired leases taken back", count=reaped)

    def release_all(self) -> None:
        """At stop: anything still leased (a failed final commit) goes back without waiting for
        expiry, and our heartbeat key says we stopped cleanly (the exporter then drops the
        heartbeat age, so a planned stop does not page; reap() forgets the key after a day)."""
        try:
            self.store.release(self.owner)
            self.store.kv_set(
                HEARTBEAT_KEY_PREFIX + self.owner, heartbeat_value(self.wall(), STOPPED, "stopped cleanly")
            )
        except StoreError as exc:
            log.error("releasing leases at stop failed; they will expire", error=str(exc))
