"""What the API knows about the system's load, refreshed by one background thread.

Per-request checks read these numbers from memory; only the sampler touches the database, once a
second, however many requests arrive. Retry-After for an overloaded backlog is the time the engine
needs to drain the excess at the drain rate measured here, not a constant.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
import time
from collections import deque
from dataclasses import dataclass

from atlas.errors import StoreError
from atlas.logging import get_logger
from atlas.settings import Settings
from atlas.store import local_database_dir
from atlas.store.models import MAINTENANCE_KEY
from atlas.store.protocols import AtlasStore

SAMPLE_SECONDS = 1.0
DRAIN_WINDOW_SECONDS = 60.0
log = get_logger("atlas.api.pressure")


@dataclass(frozen=True)
class Verdict:
    status: int  # 429 or 503
    retry_after: int
    reason: str


class Pressure:
    def __init__(self, settings: Settings, store: AtlasStore) -> None:
        self.settings, self.store = settings, store
        self.queued = 0
        self.oldest_queued_age = 0.0
        self.disk_free = 1 << 62
        self.drain_rate = 0.0  # completions per second over the last minute
        self.maintenance: dict[str, object] = {"enabled": False}
        self.store_ok = True
        self.sampled_at = 0.0
        self._samples: deque[tuple[float, int]] = deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="atlas-pressure", daemon=True)

    def start(self) -> None:
        self.sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.sample()

    def sample(self) -> None:
        now = time.time()
        try:
            stats = self.store.queue_stats()
            raw = self.store.kv_get(MAINTENANCE_KEY)
        except StoreError as exc:
            self.store_ok = False
            log.error("sampling the store failed", error=str(exc))
            return
        self.store_ok = True
        self.queued = int(stats["queued"])
        self.oldest_queued_age = now - stats["oldest_queued_at"] if stats["oldest_queued_at"] else 0.0
        self.maintenance = json.loads(raw) if raw else {"enabled": False}
        self._samples.append((now, int(stats["completions"])))
        while len(self._samples) > 2 and now - self._samples[0][0] > DRAIN_WINDOW_SECONDS:
            self._samples.popleft()
        (t0, c0), (t1, c1) = self._samples[0], self._samples[-1]
        self.drain_rate = (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0
        try:
            self.disk_free = shutil.disk_usage(local_database_dir(self.settings)).free
        except OSError:
            self.disk_free = 0
        self.sampled_at = now

    def set_maintenance(self, enabled: bool, reason: str | None, by: str | None = None) -> dict[str, object]:
        state: dict[str, object] = {"enabled": enabled, "reason": reason, "since": time.time(), "by": by}
        self.store.kv_set(MAINTENANCE_KEY, json.dumps(state))
        self.maintenance = state
        return state

    def write_verdict(self) -> Verdict | None:
        """Why a write must be refused now, or None to accept it."""
        s = self.settings
        if self.maintenance.get("enabled"):
            return Verdict(503, 60, f"maintenance: {self.maintenance.get('reason') or 'in progress'}")
        if self.disk_free < s.disk_low_water_bytes:
            return Verdict(503, 60, f"disk free {self.disk_free} bytes is under the low-water mark")
        if s.api_backlog_high_water and self.queued > s.api_backlog_high_water:
            excess = self.queued - s.api_backlog_high_water
            return Verdict(
                429, self._drain_seconds(excess), f"backlog {self.queued} is over {s.api_backlog_high_water}"
            )
        mark = s.api_oldest_queued_high_water_seconds
        if mark and self.oldest_queued_age > mark:
            # Time for the queue ahead of a new item to shrink by the part that is too old.
            excess = math.ceil(self.queued * (1 - mark / self.oldest_queued_age))
            return Verdict(
                429, self._drain_seconds(excess), f"oldest queued item is {self.oldest_queued_age:.0f}s old"
            )
        return None

    def _drain_seconds(self, items: int) -> int:
        if self.drain_rate <= 0:
            return 60  # nothing is draining: ask again in a minute
        return max(1, min(3600, math.ceil(items / self.drain_rate)))
