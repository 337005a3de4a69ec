"""Business gauges read from the store at scrape time, correct when the API and engine are down.

Every read is an index seek or a read of a small counter table kept in the same transaction as
each change (triggers of migration 0003_stats; inserts count themselves, atlas.store.sqlite_items),
never a scan of items or contents, so a scrape costs the same at 1,000,000 items as at 1,000. All
store reads of one scrape run in one read transaction: the figures are a snapshot.

What it reads besides the counters:
- Last backup: `atlas-ops backup create` (and scheduled backups) write kv key `backup.last` = JSON
  `{"finished_at": <unix seconds>, "bytes": <int>, "path"}` after the archive verifies; until the
  first backup both gauges are 0 ("never", so a backup-age alert fires on an installation that
  has never been backed up).
- Maintenance mode: kv key `maintenance` = JSON `{"enabled": bool, "since": unix seconds, ...}` as the
  API writes it; `atlas_maintenance_since_timestamp_seconds` exists only while it is on, so an alert
  on its age resolves by itself when maintenance ends.
- Engine heartbeat: kv keys `engine.heartbeat.<owner>` = Unix seconds (the supervisor writes them
  every lease/3 and deletes its own on a clean stop); the newest becomes
  `atlas_newest_heartbeat_timestamp_seconds`, 0 when there is none (no engine running).
- Feeds: `atlas_feeds{status}` counts subscriptions (migration 0004's feeds table, read whole:
  subscriptions number in the thousands at most, unlike items): `failing` when the last poll
  failed (failures > 0), `active` otherwise. `paused` is not exported until feeds can be paused
  (a gauge that cannot move must not look like a measurement).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from atlas.engine.pool import parse_heartbeat
from atlas.logging import get_logger
from atlas.observability.metrics import family
from atlas.store.models import BACKUP_KEY, HEARTBEAT_KEY_PREFIX, MAINTENANCE_KEY

FEED_STATUSES = ("active", "failing")

# The same definition the API's backpressure uses (atlas.api.pressure, queries.sql
# oldest_queued): time since acceptance of the oldest queued item, one seek on the partial index
# items_queued_created (migration 0002_api) whatever the queue's length.
OLDEST_QUEUED_SQL = "SELECT min(created_at) FROM items WHERE state = 'queued'"


def _beat_at(value: str) -> float:
    """When a heartbeat value says its engine beat (0 for a value no engine wrote)."""
    try:
        return parse_heartbeat(value)[0]
    except (ValueError, KeyError, TypeError):
        return 0.0


class StoreSnapshot:
    """What one scrape read from the store."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, int]] = []
        self.dlq: list[tuple[str, str, int]] = []
        self.oldest_queued_at: float | None = None
        self.completed = 0
        self.contents = 0
        self.content_bytes = 0
        self.kv: dict[str, str] = {}
        self.feeds: dict[str, int] = {}
        self.heartbeat_at = 0.0


class StoreReader:
    """A read-only view of the SQLite store on its own connection (never migrates or creates it)."""

    def __init__(self, path: Path, busy_timeout_ms: int = 1000) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None
        self._inode: tuple[int, int] | None = None

    def _connect(self) -> sqlite3.Connection:
        # A restore replaces the database file: an open connection would keep reading the old,
        # unlinked one forever, so the file's identity is checked every scrape (one stat call).
        try:
            st = os.stat(self.path)
        except OSError as exc:
            self.close()
            raise sqlite3.OperationalError(f"unable to open database file: {exc}") from exc
        if self._conn is not None and self._inode != (st.st_dev, st.st_ino):
            self.close()
        if self._conn is None:
            self._inode = (st.st_dev, st.st_ino)
            # mode=rw: a missing database is an error (store down), never a new empty file.
            conn = sqlite3.connect(
                f"{Path(self.path).resolve().as_uri()}?mode=rw",  # as_uri escapes ?, # and % in the path
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=self.busy_timeout_ms / 1000,
            )
            conn.execute("PRAGMA query_only = ON")
            self._conn = conn
        return self._conn

    def read(self) -> StoreSnapshot:
        """One consistent snapshot. Raises sqlite3.Error; the connection is dropped on error."""
        snap = StoreSnapshot()
        try:
            conn = self._connect()
            conn.execute("BEGIN")
            try:
                snap.items = conn.execute("SELECT state, kind, n FROM stats_items").fetchall()
                snap.dlq = conn.execute(
                    "SELECT stage, error_class, n FROM stats_dlq WHERE n > 0"
                    " ORDER BY n DESC, stage, error_class"
                ).fetchall()
                snap.oldest_queued_at = conn.execute(OLDEST_QUEUED_SQL).fetchone()[0]
                snap.completed = conn.execute("SELECT coalesce(max(seq), 0) FROM completions").fetchone()[0]
                row = conn.execute("SELECT n, bytes FROM stats_contents WHERE id = 1").fetchone()
                if row is not None:
                    snap.contents, snap.content_bytes = row
                snap.feeds = _feeds(conn)
                # kv is a handful of rows (maintenance, backup, one heartbeat per engine).
                # Engines write JSON ({"at", "status", "message"}; older ones a bare Unix time):
                # parse_heartbeat reads both, as the health checks do.
                beats = conn.execute(
                    "SELECT value FROM kv WHERE substr(key, 1, ?) = ?",
                    (len(HEARTBEAT_KEY_PREFIX), HEARTBEAT_KEY_PREFIX),
                ).fetchall()
                snap.heartbeat_at = max((_beat_at(v) for (v,) in beats), default=0.0)
                snap.kv = dict(
                    conn.execute(
                        "SELECT key, value FROM kv WHERE key IN (?, ?)", (BACKUP_KEY, MAINTENANCE_KEY)
                    ).fetchall()
                )
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error:
            self.close()
            raise
        return snap

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def _feeds(conn: sqlite3.Connection) -> dict[str, int]:
    try:
        rows = conn.execute("SELECT failures > 0, count(*) FROM feeds GROUP BY 1").fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # a store from before migration 0004
            return {}
        raise
    return {("failing" if failing else "active"): n for failing, n in rows}


def _file_size(path: Path) -> float | None:
    try:
        return float(path.stat().st_size)
    except OSError:
        return None


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
        db_path: Path,
        *,
        dlq_top_n: int = 20,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.db_path = db_path
        self.dlq_top_n = dlq_top_n
        self.clock = clock
        self.timer = timer
        self.reader = StoreReader(db_path)
        # Scrapes may overlap (threaded HTTP server); the reader's connection serves one at a time.
        self._lock = threading.Lock()
        self._last_error: str | None = None
        self._log = get_logger("atlas.exporter")

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            started = self.timer()
            try:
                snap: StoreSnapshot | None = self.reader.read()
                error = None
            except sqlite3.Error as exc:
                snap, error = None, f"{self.db_path}: {exc}"
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

        for name, path in (
            ("atlas_db_size_bytes", self.db_path),
            ("atlas_db_wal_size_bytes", Path(f"{self.db_path}-wal")),
        ):
            size = _file_size(path)
            if size is not None:
                fam = family(name)
                fam.add_metric((), size)
                yield fam

        if snap is not None:
            yield from self._store_families(snap)

    def _store_families(self, snap: StoreSnapshot) -> Iterator[Metric]:
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

        heartbeat = family("atlas_newest_heartbeat_timestamp_seconds")
        heartbeat.add_metric((), snap.heartbeat_at)
        yield heartbeat
