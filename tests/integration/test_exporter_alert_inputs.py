"""The exporter gauges the alert rules read that did not exist before issue 11: the newest engine
heartbeat, when maintenance mode was turned on, the data directory's space and the memory budget."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from atlas.engine.pool import heartbeat_value
from atlas.engine.supervisor import DEFAULT_PIPELINE
from atlas.observability.health import engine as engine_health
from atlas.settings import Settings
from atlas.store import open_store
from atlas.store.models import HEARTBEAT_KEY_PREFIX, MAINTENANCE_KEY
from atlas.store.sqlite import SQLiteStore
from exporters.business import BusinessCollector
from exporters.datadir import DataDirCollector
from tests.conftest import atlas_env
from tests.helpers.engine import start_core, wait_for
from tests.helpers.stores import stats_opener
from tests.integration.test_exporter_store import scrape


def test_heartbeat_and_maintenance_since_follow_the_store(store: SQLiteStore) -> None:
    collector = BusinessCollector(stats_opener(store.path))
    got = scrape(collector)
    assert got[("atlas_newest_heartbeat_timestamp_seconds", ())] == 0  # no engine: age counts from 1970
    assert ("atlas_maintenance_since_timestamp_seconds", ()) not in got  # off: no series, no age

    # What an engine writes (heartbeat_value: JSON), and a bare Unix time as older engines wrote.
    store.kv_set(HEARTBEAT_KEY_PREFIX + "core-a", "1700000000.5")
    store.kv_set(HEARTBEAT_KEY_PREFIX + "core-b", heartbeat_value(1700000090.25, "healthy", ""))
    store.kv_set(HEARTBEAT_KEY_PREFIX + "core-c", "not a heartbeat")  # ignored, not an error
    store.kv_set("engine.heartbeatx", "1800000000")  # not a heartbeat key: ignored
    store.kv_set(MAINTENANCE_KEY, json.dumps({"enabled": True, "reason": "upgrade", "since": 1700000100.0}))
    got = scrape(collector)
    assert got[("atlas_newest_heartbeat_timestamp_seconds", ())] == 1700000090.25
    assert got[("atlas_maintenance_since_timestamp_seconds", ())] == 1700000100.0
    assert got[("atlas_maintenance_mode", ())] == 1

    store.kv_set(MAINTENANCE_KEY, json.dumps({"enabled": False, "reason": None, "since": 1700000200.0}))
    got = scrape(collector)
    assert ("atlas_maintenance_since_timestamp_seconds", ()) not in got
    collector.reader.close()


def test_a_planned_engine_stop_drops_the_heartbeat_age_and_a_crashed_engine_keeps_it(
    tmp_path: Path,
) -> None:
    """AtlasEngineHeartbeatAge reads time() - atlas_newest_heartbeat_timestamp_seconds. A clean stop
    (SIGTERM, exit 0) must leave no series (nothing to page on during a planned stop); a crashed
    engine (SIGKILL) leaves its last beat, whose age grows until the alert pages."""
    data = tmp_path / "data"
    settings = Settings(data_dir=data, db_synchronous="NORMAL")
    store = open_store(settings, migrate=True)
    assert isinstance(store, SQLiteStore)
    collector = BusinessCollector(stats_opener(store.path))
    beat = ("atlas_newest_heartbeat_timestamp_seconds", ())
    env = atlas_env(data, ATLAS_WORKERS="1")
    log = tmp_path / "core.log"
    try:
        planned = start_core(env, DEFAULT_PIPELINE, log)
        wait_for(lambda: scrape(collector).get(beat, 0) > 0, 60, "the engine's first heartbeat")
        planned.send_signal(signal.SIGTERM)
        assert planned.wait(timeout=60) == 0, log.read_text()
        assert beat not in scrape(collector), "a planned stop must not leave a heartbeat age to page on"
        health = engine_health(store, settings.lease_seconds)
        assert (health.status, health.message) == ("degraded", "engine stopped cleanly; none running")

        crashed = start_core(env, DEFAULT_PIPELINE, log)
        wait_for(lambda: beat in scrape(collector), 60, "the second engine's heartbeat")
        crashed.kill()
        crashed.wait(timeout=60)
        last = scrape(collector)[beat]
        assert last > 0, "a crashed engine's last beat stays, so its age grows and pages"
        assert engine_health(store, settings.lease_seconds).message != "engine stopped cleanly; none running"
    finally:
        collector.reader.close()
        store.close()


def test_data_dir_space_is_the_filesystems_and_the_budget_is_the_setting(tmp_path: Path) -> None:
    st = os.statvfs(tmp_path)
    got = scrape(DataDirCollector(tmp_path, 1 << 30))
    assert got[("atlas_data_dir_size_bytes", ())] == st.f_blocks * st.f_frsize
    # Free space moves while other tests write; the same filesystem's figure, within 1 GiB.
    assert abs(got[("atlas_data_dir_avail_bytes", ())] - st.f_bavail * st.f_frsize) < 1 << 30
    assert got[("atlas_memory_budget_bytes", ())] == 1 << 30
    missing = scrape(DataDirCollector(tmp_path / "absent", 0))
    assert ("atlas_data_dir_avail_bytes", ()) not in missing
    assert missing[("atlas_memory_budget_bytes", ())] == 0
