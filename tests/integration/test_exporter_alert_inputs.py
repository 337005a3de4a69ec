"""The exporter gauges the alert rules read that did not exist before issue 11: the newest engine
heartbeat, when maintenance mode was turned on, the data directory's space and the memory budget."""

from __future__ import annotations

import json
import os
from pathlib import Path

from atlas.engine.pool import heartbeat_value
from atlas.store.models import HEARTBEAT_KEY_PREFIX, MAINTENANCE_KEY
from atlas.store.sqlite import SQLiteStore
from exporters.business import BusinessCollector
from exporters.datadir import DataDirCollector
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
