"""Scheduled upkeep in `atlas services`: memory samples of every Atlas process, and database care
(DLQ retention, PRAGMA optimize, a WAL checkpoint).

Memory: every ATLAS_RSS_SAMPLE_SECONDS, each process named by a pid file in DATA_DIR/run (every
Atlas process writes one, under systemd and the local supervisor alike) is measured with its
children (the engine's workers) summed in, and stored in the database for `atlas-ops monitoring
analyze --memory`; samples older than ATLAS_RSS_RETENTION_DAYS are dropped in the same write.

Database: every ATLAS_DB_UPKEEP_INTERVAL_SECONDS (and once at start), dead items older than
ATLAS_DLQ_RETENTION_DAYS are purged, then PRAGMA optimize and a TRUNCATE checkpoint run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from atlas.logging import get_logger
from atlas.ops.pidfiles import read_pid_files
from atlas.settings import Settings
from atlas.store import open_store
from atlas.store.models import DLQFilter, RssSample
from atlas.store.protocols import AtlasStore

log = get_logger("atlas.ops.upkeep")


def sample_rss(data_dir: Path, at: float) -> list[RssSample]:
    """One sample per live process named by a pid file: its RSS plus its children's. Stale pid
    files and processes that exit meanwhile are left out."""
    samples = []
    for service, pid in read_pid_files(data_dir):
        try:
            proc = psutil.Process(pid)
            rss = proc.memory_info().rss
            for child in proc.children(recursive=True):
                try:
                    rss += child.memory_info().rss
                except psutil.Error:
                    continue  # a worker that exited between listing and measuring
        except psutil.Error:
            continue
        samples.append(RssSample(at, service, pid, int(rss)))
    return samples


def database_upkeep(
    settings: Settings, store: AtlasStore, clock: Callable[[], float] = time.time
) -> dict[str, Any]:
    """DLQ retention, then the backend's routine upkeep (SQLite: PRAGMA optimize and a
    checkpoint); returns what was done."""
    before = clock() - settings.dlq_retention_days * 86_400
    purged = store.dlq_purge(DLQFilter(dead_before=before))
    result: dict[str, Any] = {"dlq_purged": purged, **store.routine_upkeep()}
    log.info("database upkeep", retention_days=settings.dlq_retention_days, **result)
    return result


def run_upkeep(settings: Settings, stop: threading.Event, clock: Callable[[], float] = time.time) -> None:
    """Loop of `atlas services` until `stop`: memory samples and database upkeep on their schedules.

    `atlas services` owns no schema: the store is opened without migrating. A failed round is
    logged and the loop goes on (the feed poller and backups must not stop with it).
    """
    store = open_store(settings, migrate=False)
    retain = settings.rss_retention_days * 86_400
    next_sample = next_upkeep = time.monotonic()
    try:
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_sample:
                next_sample = now + settings.rss_sample_seconds
                try:
                    store.rss_record(sample_rss(settings.data_dir, clock()), retain)
                except Exception as exc:  # logged; the next round tries again
                    log.error("memory sampling failed", error=str(exc))
            if now >= next_upkeep:
                next_upkeep = now + settings.db_upkeep_interval_seconds
                try:
                    database_upkeep(settings, store, clock)
                except Exception as exc:  # logged; the next round tries again
                    log.error("database upkeep failed", error=str(exc))
            stop.wait(max(0.0, min(next_sample, next_upkeep) - time.monotonic()))
    finally:
        store.close()
