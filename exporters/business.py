"""Business gauges read from the store at scrape time, correct when the API and engine are down.

The figures come from the store's read-only snapshot (StatsStore.stats_snapshot): maintained
counters and index seeks in one read transaction, so a scrape costs the same at 1,000,000 items as
at 1,000 and the figures are consistent. The store is opened without migrating and reopened after
a failure, so the exporter reports store_up 0 while the database is missing and recovers by itself.

What it reads besides the counters:
- Last backup: `atlas-ops backup create` (and scheduled backups) write kv key `backup.last` = JSON
  `{"finished_at": <unix seconds>, "bytes": <int>, "path"}` after the archive verifies; until the
  first backup both gauges are 0 ("never", so a backup-age alert fires on an installation that
  has never been backed up).
- Maintenance mode: kv key `maintenance` = JSON `{"enabled": bool, "since": unix seconds, ...}` as the
  API writes it; `atlas_maintenance_since_timestamp_seconds` exists only while it is on, so an alert
  on its age resolves by itself when maintenance ends.
- Engine heartbeat: kv keys `engine.heartbeat.<owner>` = JSON {at, status, message} (the supervisor
  writes them every lease/3, and status `stopped` on a clean stop); the newest of the running
  engines becomes `atlas_newest_heartbeat_timestamp_seconds`, 0 when there is none (no engine ever
  ran), and no series at all when every engine stopped cleanly, so the heartbeat-age alert stays
  quiet through a planned stop (like maintenance below) while a crashed engine's old beat pages.
- Feeds: `atlas_feeds{status}` counts subscriptions (migration 0004's feeds table, read whole:
  subscriptions number in the thousands at most, unlike items): `failing` when the last poll
  failed (failures > 0), `active` otherwise. `paused` is not exported until feeds can be paused
  (a gauge that cannot move must not look like a measurement).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from atlas.engine.pool import STOPPED, parse_heartbeat
from atlas.errors import AtlasError
from atlas.logging import get_logger
from atlas.observability.metrics import family
from atlas.store.models import BACKUP_KEY, MAINTENANCE_KEY, StoreStats
from atlas.store.protocols import StatsStore

FEED_STATUSES = ("active", "failing")


def newest_beat(values: list[str]) -> float | None:
    """The newest beat of a running engine; None when every engine stopped cleanly (a planned
    stop: no series, so no heartbeat age to page on); 0 when no engine ever wrote one, or the
    values are not heartbeats (age since 1970: it pages). A crashed engine's key keeps its last
    beat, which ages and pages."""
    running, stopped = [], False
    for value in values:
        try:
            at, status, _ = parse_heartbeat(value)
        except (ValueError, KeyError, TypeError):
            continue
        if status == STOPPED:
            stopped = True
        else:
            running.append(at)
    if running:
        return max(running)
    return None if stopped else 0.0


class StoreReader:
    """The store's snapshot, opened on first use and again after any failure (never migrated)."""

    def __init__(self, opener: Callable[[], StatsStore]) -> None:
        self.opener = opener
        self._store: StatsStore | None = None

    def read(self) -> StoreStats:
        """One snapshot. Raises AtlasError (DatabaseNotReady, StoreError); the store is dropped."""
        try:
            if self._store is None:
                self._store = self.opener()
            return self._store.stats_snapshot()
        except AtlasError:
            self.close()
            raise

    def close(self) -> None:
        if self._store is not None:
            try:
                self._store.close()
            finally:
                self._store = None


def _maintenance_on(raw: str | None) -> bool:
    # Read like the engine and the API read it (atlas.api.pressure): JSON with "enabled".
    if not raw:
        return False
    try:
        value: Any = json.loads(raw)
        return bool(value.get("enabled"))
    except (ValueError, AttributeError):
        return False  # unreadable: the engine does not pause on it either


def _maintenance_since(raw: str | None) -> float | None:
    """When maintenance was turned on, or None while it is off."""
    if not _maintenance_on(raw):
        return None
    try:
        value: Any = json.loads(raw or "")
        return float(value.get("since") or 0.0)
    except (ValueError, TypeError, AttributeError):
        return 0.0  # on, but since unknown: report the epoch so an age alert errs towards firing


def _backup(raw: str | None) -> tuple[float, float]:
    if not raw:
        return 0.0, 0.0
    try:
        value: Any = json.loads(raw)
        return float(value.get("finished_at", 0)), float(value.get("bytes", 0))
    except (ValueError, TypeError, AttributeError):
        return 0.0, 0.0  # unreadable record: report "never" rather than fail the scrape


class BusinessCollector(Collector):
    """atlas_items, DLQ, completions, contents, DB/WAL size, backup, feeds, maintenance gauges,
    plus atlas_exporter_store_up and the last store read's duration."""

    def __init__(
        self,
        opener: Callable[[], StatsStore],
        *,
        dlq_top_n: int = 20,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.dlq_top_n = dlq_top_n
        self.clock = clock
        self.timer = timer
        self.reader = StoreReader(opener)
        # Scrapes may overlap (threaded HTTP server); the reader's connection serves one at a time.
        self._lock = threading.Lock()
        self._last_error: str | None = None
        self._log = get_logger("atlas.exporter")

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            started = self.timer()
            try:
                snap: StoreStats | None = self.reader.read()
                error = None
            except AtlasError as exc:
                snap, error = None, str(exc)
            duration = self.timer() - started
        if error != self._last_error:  # log changes of state, not every failing scrape
            if error:
                self._log.warning("store unreadable", error=error)
            elif self._last_error:
                self._log.info("store readable again")
            self._last_error = error

        up = family("atlas_exporter_store_up")
        up.add_metric((), 0 if snap is None else 1)
        took = family("atlas_exporter_store_read_duration_seconds")
        took.add_metric((), duration)
        yield from (up, took)

        if snap is not None:
            yield from self._store_families(snap)

    def _store_families(self, snap: StoreStats) -> Iterator[Metric]:
        sizes = (("atlas_db_size_bytes", snap.db_bytes), ("atlas_db_wal_size_bytes", snap.wal_bytes))
        for name, size in sizes:
            if size is not None:
                fam = family(name)
                fam.add_metric((), size)
                yield fam

        items = family("atlas_items")
        for state, kind, n in snap.items:
            items.add_metric((state, kind), n)
        yield items

        oldest = family("atlas_queue_oldest_item_age_seconds")
        age = 0.0 if snap.oldest_queued_at is None else max(0.0, self.clock() - snap.oldest_queued_at)
        oldest.add_metric((), age)
        yield oldest

        dlq = family("atlas_dlq_items")
        for stage, error_class, n in snap.dlq[: self.dlq_top_n]:
            dlq.add_metric((f"{stage}:{error_class}",), n)
        # Folded so that sum(atlas_dlq_items) is always the DLQ's size, however many fingerprints.
        rest = sum(n for _, _, n in snap.dlq[self.dlq_top_n :])
        if rest:
            dlq.add_metric(("other",), rest)
        yield dlq

        completed = family("atlas_items_completed_total")
        completed.add_metric((), snap.completed)
        yield completed

        contents = family("atlas_contents")
        contents.add_metric((), snap.contents)
        content_bytes = family("atlas_contents_size_bytes")
        content_bytes.add_metric((), snap.content_bytes)
        yield from (contents, content_bytes)

        finished_at, size = _backup(snap.kv.get(BACKUP_KEY))
        backup_ts = family("atlas_backup_last_success_timestamp_seconds")
        backup_ts.add_metric((), finished_at)
        backup_size = family("atlas_backup_last_size_bytes")
        backup_size.add_metric((), size)
        yield from (backup_ts, backup_size)

        feeds = family("atlas_feeds")
        for status in FEED_STATUSES:
            feeds.add_metric((status,), snap.feeds.get(status, 0))
        yield feeds

        maintenance = family("atlas_maintenance_mode")
        maintenance.add_metric((), 1 if _maintenance_on(snap.kv.get(MAINTENANCE_KEY)) else 0)
        yield maintenance

        since = family("atlas_maintenance_since_timestamp_seconds")
        started = _maintenance_since(snap.kv.get(MAINTENANCE_KEY))
        if started is not None:
            since.add_metric((), started)
        yield since

        # Engines write JSON ({"at", "status", "message"}; older ones a bare Unix time):
        # parse_heartbeat reads both, as the health checks do.
        newest = newest_beat(snap.heartbeats)
        if newest is not None:
            heartbeat = family("atlas_newest_heartbeat_timestamp_seconds")
            heartbeat.add_metric((), newest)
            yield heartbeat
