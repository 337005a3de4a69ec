"""The agent's evaluator: `for`, keep_firing_for, cooldown and resolution on a fake clock; the
history's staleness and memory bound. (When it fires compared with Prometheus:
tests/integration/test_agent_vs_promtool.py.)"""

from __future__ import annotations

from atlas.alerting.queries import QUERIES
from atlas.alerting.query import Sel
from atlas.monitor.evaluate import AgentAlert, Evaluator, reads
from atlas.monitor.history import History

EXPORTER = {"job": "node", "instance": "127.0.0.1:9110"}
SINCE = "atlas_maintenance_since_timestamp_seconds"


def scrape(h: History, at: float, since: float | None) -> None:
    h.ingest("node", at, [] if since is None else [({"__name__": SINCE, **EXPORTER}, since)])


def test_pending_for_then_firing_then_cooldown_then_kept_then_resolved() -> None:
    alert = AgentAlert.threshold(
        "AtlasMaintenanceAge",
        "warning",
        QUERIES["maintenance_age"],
        ">",
        60.0,
        for_seconds=30.0,
        keep_firing_for_seconds=20.0,
        cooldown_seconds=300.0,
    )
    h, ev = History(reads([alert]), 1.0), Evaluator([alert])

    def step(at: float, since: float | None = 1000) -> list[tuple[str, float]]:
        scrape(h, at, since)
        return [(t.status, t.value) for t in ev.evaluate(h, at)]

    assert step(1050) == []  # age 50: not above 60
    assert step(1061) == [] and list(ev.active().values()) == ["pending"]
    assert step(1090) == []  # 29s pending < for 30s
    assert step(1091) == [("firing", 91)]
    assert step(1300) == []  # within the cooldown
    assert step(1391) == [("firing", 391)]  # cooldown over: again
    assert step(1400, None) == []  # series gone (stale at once, not 5 minutes later): kept 20s
    assert step(1419, None) == [] and list(ev.active().values()) == ["firing"]
    assert step(1420, None) == [("resolved", 391)]
    assert step(1500, None) == [] and ev.active() == {}


def test_history_keeps_each_series_as_long_as_its_longest_range() -> None:
    avail = Sel("atlas_data_dir_avail_bytes")
    h = History([(avail, 0.0), (avail, 3600.0), (Sel("atlas_items"), 0.0)], 15.0)
    rows = [
        ({"__name__": "atlas_data_dir_avail_bytes", **EXPORTER}, 1.0),
        ({"__name__": "atlas_items", "state": "queued", **EXPORTER}, 2.0),
        ({"__name__": "node_unread_total", **EXPORTER}, 3.0),
    ]
    for i in range(1000):
        h.ingest("node", i * 15.0, rows)
    sizes = {dict(k)["__name__"]: len(r.ts) for k, r in h.series.items()}
    # 1h at 15s = 240 intervals (+2: both ends); an instant selector needs the latest; unread: nothing.
    assert sizes == {"atlas_data_dir_avail_bytes": 242, "atlas_items": 2}
    assert h.memory_bytes() == (242 + 2) * 16
    ring = h.series[tuple(sorted(rows[0][0].items()))]
    points = ring.samples(999 * 15.0 - 3600, 999 * 15.0)
    assert len(points) == 241 and points[0][0] == 999 * 15.0 - 3600 and points[-1][0] == 999 * 15.0
    for i in range(1000, 1300):  # the series stop: stale at once, forgotten once no range reaches them
        h.ingest("node", i * 15.0, [])
    assert h.series == {} and h.memory_bytes() == 0


def test_ranges_name_what_the_history_keeps() -> None:
    alert = AgentAlert.threshold("A", "warning", QUERIES["disk_fill_hours"], "<", 24.0)
    avail = Sel("atlas_data_dir_avail_bytes")
    assert set(reads([alert])) == {(avail, 0.0), (avail, 3600.0)}
