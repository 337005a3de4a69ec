"""The pure parts of `monitoring analyze --memory`, `monitoring metrics` and `system check
--database`: growth verdicts, metric filtering, which plan steps read a whole table."""

from __future__ import annotations

from atlas.ops.monitoring import Scrape, analyze_memory, exposition, samples
from atlas.store.sqlite_ops import RssSample, _full_scan

MB = 1_000_000


def _series(service: str, pid: int, start: float, mbs: list[float], step: float = 600.0) -> list[RssSample]:
    return [RssSample(start + i * step, service, pid, int(mb * MB)) for i, mb in enumerate(mbs)]


def test_growth_rate_and_verdicts() -> None:
    leaking = _series("atlas-core", 10, 0.0, [100, 105, 110, 115, 120, 125, 130])  # +5 MB / 10 min
    steady = _series("atlas-api", 11, 0.0, [80, 81, 80, 81, 80, 81, 80])
    young = _series("atlas-exporter", 12, 0.0, [30, 40], step=10.0)
    rows = {r["service"]: r for r in analyze_memory(leaking + steady + young)}
    assert rows["atlas-core"]["verdict"] == "growing"
    assert rows["atlas-core"]["rate_mb_per_hour"] == 30.0
    assert rows["atlas-api"]["verdict"] == "stable" and abs(rows["atlas-api"]["rate_mb_per_hour"]) < 1
    assert rows["atlas-exporter"]["verdict"] == "insufficient data"
    assert (rows["atlas-core"]["first_mb"], rows["atlas-core"]["last_mb"], rows["atlas-core"]["peak_mb"]) == (
        100.0,
        130.0,
        130.0,
    )


def test_a_restart_starts_the_growth_fit_afresh() -> None:
    # Grew before a restart (pid 20), flat since (pid 21): the current run is what is judged.
    history = _series("atlas-api", 20, 0.0, [100, 200, 300, 400]) + _series(
        "atlas-api", 21, 2400.0, [90, 90, 91, 90]
    )
    (row,) = analyze_memory(history)
    assert (row["pid"], row["restarts"], row["samples"], row["verdict"]) == (21, 1, 8, "stable")
    assert row["peak_mb"] == 400.0 and row["first_mb"] == 90.0


def test_whole_table_reads_are_flagged_and_index_walks_of_partial_indexes_are_not() -> None:
    partial = {"items_due", "items_dead_id"}
    plan = ["SCAN items"]
    assert _full_scan("SCAN items", plan, partial)
    assert _full_scan("SCAN c", plan, partial)  # an alias is still a table
    assert _full_scan("SCAN items USING INDEX sqlite_autoindex_items_1", plan, partial)
    assert _full_scan("SCAN items USING COVERING INDEX sqlite_autoindex_items_1", plan, partial)
    assert not _full_scan("SCAN items USING INDEX items_due", plan, partial)
    assert not _full_scan("SEARCH items USING INDEX items_idempotency_key (idempotency_key=?)", plan, partial)
    assert not _full_scan("SCAN contents_fts VIRTUAL TABLE INDEX 0:M2", plan, partial)
    assert not _full_scan("SCAN CONSTANT ROW", plan, partial)
    assert not _full_scan("SCAN g", ["MATERIALIZE g", "SCAN items USING INDEX items_dead", "SCAN g"], partial)


TEXT = """# HELP atlas_process_resident_memory_bytes Resident memory.
# TYPE atlas_process_resident_memory_bytes gauge
atlas_process_resident_memory_bytes{service="atlas-api"} 8.0e+07
# HELP atlas_items Items in the store by state and kind.
# TYPE atlas_items gauge
atlas_items{kind="document",state="queued"} 3.0
"""


def test_filter_keeps_matching_metrics_in_every_format() -> None:
    scrapes = [
        Scrape("node", "http://127.0.0.1:1/metrics", TEXT),
        Scrape("atlas-api", "http://x/metrics", None, "refused"),
    ]
    rows = samples(scrapes, "MEMORY")
    assert rows == [
        {
            "job": "node",
            "name": "atlas_process_resident_memory_bytes",
            "labels": {"service": "atlas-api"},
            "value": 8.0e7,
        }
    ]
    text = exposition(scrapes, "memory")
    assert "atlas_items" not in text and text.count("atlas_process_resident_memory_bytes") == 3
    assert len(samples(scrapes, None)) == 2
