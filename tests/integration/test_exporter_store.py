"""Business gauges and service processes from a real SQLite store, real pid files and real /proc."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from atlas.ops.pidfiles import pid_file, read_pid_files
from atlas.settings import Settings
from atlas.store.models import ContentResult, DLQFilter, ErrorInfo, NewItem, Transition
from atlas.store.sqlite import SQLiteStore, _split_sql, migrations
from exporters import build_registry
from exporters.business import BusinessCollector
from exporters.services import ServiceProcessCollector
from tests.helpers.procfs_tree import add_process, write_tree
from tests.helpers.stores import stats_opener

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(*collectors: object) -> Samples:
    registry = CollectorRegistry(auto_describe=False)
    for c in collectors:
        registry.register(c)  # type: ignore[arg-type]
    out: Samples = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def by_label(got: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(k[1])[label]: v for k, v in got.items() if k[0] == name}


def fail(store: SQLiteStore, ids: list[str], token: str, stage: str, error_class: str) -> None:
    store.apply(
        [
            Transition(
                i, token, "dead", "dead", error=ErrorInfo(stage, error_class, "boom"), dead_reason="permanent"
            )
            for i in ids
        ]
    )


def test_gauges_follow_the_store_through_every_transition(any_store: Any) -> None:
    """Both backends, through the store's own snapshot (what `atlas exporter` opens)."""
    store = any_store
    now = [1_000_000.0]
    store.clock = lambda: now[0]
    ids = [r.id for r in store.enqueue([NewItem(kind="url", payload={"n": i}) for i in range(10)])]
    # Not due yet: with every item of one instant, the claim's order among equals is the backend's
    # (PostgreSQL once took the document among its 6), and the figures below need 6 urls.
    store.enqueue([NewItem(kind="document", payload={"n": 1}, not_before=now[0] + 10_000)])
    claimed = store.claim("me", 6, 30)
    assert {c.kind for c in claimed} == {"url"}
    token = claimed[0].token
    done = [c.id for c in claimed[:2]]
    store.apply(
        [
            Transition(i, token, "done", "done", result=ContentResult(f"h{i}", "héllo"))
            for i in done  # "héllo" is 6 bytes in UTF-8
        ]
    )
    fail(store, [claimed[2].id, claimed[3].id], token, "fetch", "HTTPError")
    fail(store, [claimed[4].id], token, "extract", "ParseError")
    now[0] += 100
    collector = BusinessCollector(lambda: store, dlq_top_n=1, clock=lambda: now[0])

    got = scrape(collector)
    assert got[("atlas_exporter_store_up", ())] == 1
    items = {(dict(k[1])["state"], dict(k[1])["kind"]): v for k, v in got.items() if k[0] == "atlas_items"}
    assert {k: v for k, v in items.items() if v} == {
        (state, kind): float(n) for (state, kind), n in store.counts().items()
    }
    assert items[("queued", "url")] == 4 and items[("leased", "url")] == 1 and items[("dead", "url")] == 3
    # Top 1 fingerprint, the rest folded into "other": the sum is the DLQ's size.
    assert by_label(got, "atlas_dlq_items", "fingerprint") == {"fetch:HTTPError": 2, "other": 1}
    assert got[("atlas_items_completed_total", ())] == 5  # 2 done + 3 dead
    assert got[("atlas_contents", ())] == 2 and got[("atlas_contents_size_bytes", ())] == 12
    assert got[("atlas_queue_oldest_item_age_seconds", ())] == 100
    if isinstance(store, SQLiteStore):
        assert got[("atlas_db_size_bytes", ())] == store.path.stat().st_size
    else:
        assert got[("atlas_db_size_bytes", ())] > 0 and ("atlas_db_wal_size_bytes", ()) not in got
    assert got[("atlas_maintenance_mode", ())] == 0
    assert by_label(got, "atlas_feeds", "status") == {"active": 0, "failing": 0}
    # No backup yet: 0 = never (backups write kv backup.last; see test_backup_restore.py). Feeds
    # cannot be paused yet, so there is no `paused` series.
    assert got[("atlas_backup_last_success_timestamp_seconds", ())] == 0
    assert got[("atlas_backup_last_size_bytes", ())] == 0
    store.kv_set("engine.heartbeat.e1", json.dumps({"at": 999_990.0, "status": "healthy", "message": ""}))
    store.kv_set("engine.heartbeat.e2", "999000")  # an older engine's bare Unix time
    store.record_backup(999_000.0, 4096, "/b.tar.gz")
    got = scrape(collector)
    assert got[("atlas_newest_heartbeat_timestamp_seconds", ())] == 999_990.0
    assert got[("atlas_backup_last_success_timestamp_seconds", ())] == 999_000.0
    assert got[("atlas_backup_last_size_bytes", ())] == 4096

    # Replay, purge and a retry move the counters exactly like a COUNT(*) would.
    store.dlq_replay(DLQFilter(error_class="ParseError"))
    store.dlq_purge(DLQFilter(error_class="HTTPError"))
    store.kv_set("maintenance", json.dumps({"enabled": True, "reason": "upgrade", "since": 1.0}))
    got = scrape(collector)
    items = {(dict(k[1])["state"], dict(k[1])["kind"]): v for k, v in got.items() if k[0] == "atlas_items"}
    assert {k: v for k, v in items.items() if v} == {k: float(n) for k, n in store.counts().items()}
    assert items[("dead", "url")] == 0  # a state that emptied is exported as 0, not dropped
    assert by_label(got, "atlas_dlq_items", "fingerprint") == {}
    assert got[("atlas_maintenance_mode", ())] == 1
    assert ids  # the url items were all created


def test_oldest_queued_age_counts_from_acceptance_and_only_queued_items(store: SQLiteStore) -> None:
    now = [5_000.0]
    store.clock = lambda: now[0]
    store.enqueue([NewItem(kind="url", payload={}, priority=9)])
    now[0] = 5_060.0
    store.enqueue([NewItem(kind="url", payload={}, priority=-3), NewItem(kind="url", payload={})])
    assert (
        scrape(BusinessCollector(stats_opener(store.path), clock=lambda: 5_100.0))[
            ("atlas_queue_oldest_item_age_seconds", ())
        ]
        == 100
    )
    assert [c.priority for c in store.claim("me", 1, 30)] == [9]  # the oldest leaves the queue
    got = scrape(BusinessCollector(stats_opener(store.path), clock=lambda: 5_100.0))
    assert got[("atlas_queue_oldest_item_age_seconds", ())] == 40


def test_counters_are_backfilled_when_the_migration_meets_existing_items(tmp_path: Path) -> None:
    db = tmp_path / "v1.db"
    conn = sqlite3.connect(db)
    version, _, sql = migrations()[0]
    for statement in _split_sql(sql):
        conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    rows = [
        (f"i{n}", "url" if n % 2 else "document", state, stage, error_class)
        for n, (state, stage, error_class) in enumerate(
            [("queued", None, None)] * 3 + [("done", None, None)] * 2 + [("dead", "fetch", "Timeout")] * 4
        )
    ]
    conn.executemany(
        "INSERT INTO items (id, kind, state, payload, last_error_stage, last_error_class, next_attempt_at,"
        " created_at, updated_at) VALUES (?, ?, ?, '{}', ?, ?, 0, 0, 0)",
        rows,
    )
    conn.execute(
        "INSERT INTO contents (item_id, content_hash, text, bytes, created_at) VALUES ('i3', 'h', 't', 9, 0)"
    )
    conn.commit()
    conn.close()

    SQLiteStore(db).close()  # applies 0002_api and 0003_stats, which backfills from the rows above
    got = scrape(BusinessCollector(stats_opener(db)))
    items = {(dict(k[1])["state"], dict(k[1])["kind"]): v for k, v in got.items() if k[0] == "atlas_items"}
    assert items == {
        ("queued", "document"): 2,
        ("queued", "url"): 1,
        ("done", "url"): 1,
        ("done", "document"): 1,
        ("dead", "document"): 2,
        ("dead", "url"): 2,
    }
    assert by_label(got, "atlas_dlq_items", "fingerprint") == {"fetch:Timeout": 4}
    assert got[("atlas_contents", ())] == 1 and got[("atlas_contents_size_bytes", ())] == 9


def test_a_restored_database_file_is_read_not_the_replaced_one(tmp_path: Path) -> None:
    tmp_path = tmp_path / "odd ?#% name"  # the reader opens by URI: these must be escaped
    live, restored = SQLiteStore(tmp_path / "atlas.db"), SQLiteStore(tmp_path / "restored.db")
    live.enqueue([NewItem(kind="url", payload={})])
    restored.enqueue([NewItem(kind="document", payload={}) for _ in range(3)])
    live.close()
    restored.close()
    collector = BusinessCollector(stats_opener(tmp_path / "atlas.db"))
    assert by_label(scrape(collector), "atlas_items", "kind") == {"url": 1}
    os.replace(tmp_path / "restored.db", tmp_path / "atlas.db")
    assert by_label(scrape(collector), "atlas_items", "kind") == {"document": 3}
    (tmp_path / "atlas.db").unlink()
    assert scrape(collector)[("atlas_exporter_store_up", ())] == 0


def test_store_down_still_serves_system_metrics(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "nothing-here")
    got = scrape(build_registry(settings, commit="abc123"))
    assert got[("atlas_exporter_store_up", ())] == 0
    assert ("atlas_items_completed_total", ()) not in got
    assert got[("node_memory_MemTotal_bytes", ())] > 0
    assert got[("atlas_build_info", (("commit", "abc123"), ("version", "0.1.0")))] == 1
    assert not (tmp_path / "nothing-here" / "atlas.db").exists()  # the exporter never creates it


def test_service_processes_from_pid_files_on_a_fixture_tree(tmp_path: Path) -> None:
    proc = write_tree(tmp_path)
    data = tmp_path / "data"
    add_process(proc, 4242, fds=7, utime=150, stime=50, threads=12, start_ticks=2_000, rss_pages=1_000)
    add_process(proc, 4343, fds=1, utime=1, stime=1, threads=1, start_ticks=1, rss_pages=1)
    with pid_file(data, "atlas-core", pid=4242), pid_file(data, "atlas-api", pid=9999):  # 9999: gone
        (data / "run" / "garbage.pid").write_text("not a pid\n", encoding="ascii")
        (data / "run" / "Bad Name.pid").write_text("4343\n", encoding="ascii")
        got = scrape(ServiceProcessCollector(data, proc, page_bytes=4096))
        assert by_label(got, "atlas_process_resident_memory_bytes", "service") == {"atlas-core": 4_096_000}
        assert got[("atlas_process_cpu_seconds_total", (("service", "atlas-core"),))] == 2.0
        assert got[("atlas_process_open_fds", (("service", "atlas-core"),))] == 7
        assert got[("atlas_process_threads", (("service", "atlas-core"),))] == 12
        assert got[("atlas_process_start_time_seconds", (("service", "atlas-core"),))] == 1_700_000_020
        # A pid file older than its process's start: the pid was reused by something else.
        os.utime(data / "run" / "atlas-core.pid", (1_600_000_000, 1_600_000_000))
        assert scrape(ServiceProcessCollector(data, proc)) == {}
        assert read_pid_files(data) == [("atlas-api", 9999), ("atlas-core", 4242)]
    assert read_pid_files(data) == []  # both removed at exit; the malformed ones are never read


def test_own_process_through_a_real_pid_file(tmp_path: Path) -> None:
    with pid_file(tmp_path, "atlas-exporter"):
        got = scrape(ServiceProcessCollector(tmp_path))
    assert got[("atlas_process_resident_memory_bytes", (("service", "atlas-exporter"),))] > 1_000_000
    assert got[("atlas_process_threads", (("service", "atlas-exporter"),))] >= 1
    assert not (tmp_path / "run" / "atlas-exporter.pid").exists()


def test_feed_subscriptions_are_counted_by_status(store: SQLiteStore) -> None:
    store.enqueue(
        [NewItem(kind="feed", payload={"url": f"https://feeds{i}.example/rss"}) for i in range(3)]
    )  # a feed item subscribes its feed (atlas.store.sqlite_items.insert_items)
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE feeds SET failures = 2, last_status = 'error' WHERE url LIKE '%feeds0%'")
    got = scrape(BusinessCollector(stats_opener(store.path)))
    assert by_label(got, "atlas_feeds", "status") == {
        "active": 2,
        "failing": 1,
    }  # no `paused` until feeds pause
