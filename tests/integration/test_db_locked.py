"""atlas_db_locked_errors_total counts store operations that gave up on a locked database.

The lock is real: another connection holds SQLite's write lock (BEGIN IMMEDIATE) while the API's
and the engine's stores, opened with a short busy timeout, try to write.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from atlas.engine.supervisor import Engine
from atlas.errors import StoreError
from atlas.settings import Settings
from atlas.store.models import NewItem
from atlas.store.sqlite import SQLiteStore
from tests.helpers.api import running_api

BUSY_TIMEOUT_MS = 200  # how long the store waits for the lock before "database is locked"


class ShortBusyStore(SQLiteStore):
    """The real store, waiting only BUSY_TIMEOUT_MS for a lock so the test does not wait 10 s."""

    def __init__(self, path: Path | str, **kwargs: Any) -> None:
        super().__init__(path, **{**kwargs, "busy_timeout_ms": BUSY_TIMEOUT_MS})


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another connection holding the database's write lock until the block ends."""
    other = sqlite3.connect(path, isolation_level=None, timeout=5)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


def _counter(text: str) -> float:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "atlas_db_locked_errors_total":
                return float(s.value)
    raise AssertionError("atlas_db_locked_errors_total is not exported")


def test_the_store_counts_a_write_that_found_the_database_locked(tmp_path: Path) -> None:
    store = ShortBusyStore(tmp_path / "atlas.db", synchronous="NORMAL")
    try:
        with write_lock_held(store.path), pytest.raises(StoreError, match="locked"):
            store.enqueue([NewItem("document", {"content": "x"})])
        assert store.locked_errors == 1
        store.enqueue([NewItem("document", {"content": "x"})])  # lock gone: no new count
        assert store.locked_errors == 1
    finally:
        store.close()


def test_a_write_that_waited_for_the_lock_goes_ahead_and_keeps_the_busy_timeout(tmp_path: Path) -> None:
    # The store waits for another writer's lock itself (SQLiteConnections._begin), with the
    # connection's busy timeout at 0 for its BEGIN only; every later statement waits as before.
    store = SQLiteStore(tmp_path / "atlas.db", synchronous="NORMAL", busy_timeout_ms=5000)
    try:
        other = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.05, lambda: other.execute("COMMIT"))
        release.start()
        try:
            [result] = store.enqueue([NewItem("document", {"content": "waited"})])
        finally:
            release.join()
            other.close()
        assert result.created and store.get_item(result.id) is not None
        assert store.locked_errors == 0
        with store._read() as conn:
            assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    finally:
        store.close()


def test_the_api_answers_503_and_exports_the_locked_error(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, core_metrics_port=0, db_synchronous="NORMAL", db_busy_timeout_ms=BUSY_TIMEOUT_MS
    )
    with running_api(settings) as api:  # opens the store as `atlas api` does, with that timeout
        headers = api.auth("ingest")
        assert _counter(httpx.get(f"{api.url}/metrics").text) == 0
        with write_lock_held(settings.sqlite_path):
            r = httpx.post(f"{api.url}/v1/items", json={"content": "locked out"}, headers=headers, timeout=30)
            assert r.status_code == 503, r.text
        assert _counter(httpx.get(f"{api.url}/metrics").text) >= 1
        r = httpx.post(f"{api.url}/v1/items", json={"content": "after"}, headers=headers, timeout=30)
        assert r.status_code == 202, r.text


def test_the_engine_registry_exports_its_stores_locked_errors(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, core_metrics_port=0, db_synchronous="NORMAL")
    store = ShortBusyStore(settings.sqlite_path, synchronous="NORMAL")
    registry = CollectorRegistry()
    try:
        Engine(settings, store, registry=registry)
        assert registry.get_sample_value("atlas_db_locked_errors_total") == 0
        with write_lock_held(store.path), pytest.raises(StoreError, match="locked"):
            store.heartbeat("engine-under-test", 30)
        assert registry.get_sample_value("atlas_db_locked_errors_total") == 1
    finally:
        store.close()
