"""atlas_db_query_duration_seconds{query}: every named query the store runs is one observation
under its name, on SQLite and PostgreSQL, and the engine's registry exports it (the API's is read
from a real `atlas api` process in test_ops_monitoring.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from atlas.engine.supervisor import Engine
from atlas.observability.metrics import watch_store_locks
from atlas.settings import Settings
from atlas.store.models import NewItem
from atlas.store.sqlite import SQLiteStore

METRIC = "atlas_db_query_duration_seconds"


def _count(registry: CollectorRegistry, query: str) -> float:
    return registry.get_sample_value(f"{METRIC}_count", {"query": query}) or 0.0


def test_each_named_query_run_is_one_observation_under_its_name(any_store: Any) -> None:
    registry = CollectorRegistry()
    watch_store_locks(registry, any_store)
    ids = [r.id for r in any_store.enqueue([NewItem("document", {"content": f"q {i}"}) for i in range(3)])]
    assert _count(registry, "claim") == 0 and _count(registry, "get_item") == 0
    assert len(any_store.claim("metric-test", 2, 30)) == 2
    assert any_store.get_item(ids[0]) is not None and any_store.get_item(ids[2]) is not None
    # Exact counts: the histogram is this store's own, not shared with other stores in the process
    # (`atlas up` serves the API's and the engine's stores from one process on two /metrics).
    assert _count(registry, "claim") == 1
    assert _count(registry, "get_item") == 2
    assert (registry.get_sample_value(f"{METRIC}_sum", {"query": "get_item"}) or 0.0) > 0
    text = generate_latest(registry).decode()
    assert f'{METRIC}_count{{query="claim"}}' in text
    assert 'query="feed_delete"' not in text  # never ran here: no series


def test_the_engine_registry_exports_the_query_durations(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, core_metrics_port=0, db_synchronous="NORMAL")
    store = SQLiteStore(settings.sqlite_path, synchronous="NORMAL")
    registry = CollectorRegistry()
    try:
        Engine(settings, store, registry=registry)
        before = _count(registry, "heartbeat")
        store.heartbeat("engine-under-test", 30)
        assert _count(registry, "heartbeat") == before + 1
        other = SQLiteStore(settings.sqlite_path, synchronous="NORMAL", migrate=False)
        other.heartbeat("another-process", 30)  # another store's queries are not the engine's
        other.close()
        assert _count(registry, "heartbeat") == before + 1
    finally:
        store.close()
