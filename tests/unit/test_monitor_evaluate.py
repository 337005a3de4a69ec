"""The agent's evaluator: `for`, cooldown and resolution on a fake clock, values as the rules define."""

from __future__ import annotations

from atlas.monitor.evaluate import EVALUATORS, Evaluator, Sample

EXPORTER = {"job": "node", "instance": "127.0.0.1:9110"}


def since(at: float) -> list[Sample]:
    return [Sample("atlas_maintenance_since_timestamp_seconds", dict(EXPORTER), at)]


def test_pending_for_then_firing_then_cooldown_then_resolved() -> None:
    ev = Evaluator([("AtlasMaintenanceAge", "warning", "maintenance_age", ">", 60.0, 30.0, 300.0)])
    assert ev.evaluate(since(1000), 1050) == []  # age 50: not above 60
    assert ev.evaluate(since(1000), 1061) == []  # above: pending
    assert ev.evaluate(since(1000), 1090) == []  # 29s pending < for 30s
    fired = ev.evaluate(since(1000), 1091)
    assert [(t.status, t.value) for t in fired] == [("firing", 91)]
    assert ev.evaluate(since(1000), 1300) == []  # within the cooldown
    assert [t.status for t in ev.evaluate(since(1000), 1391)] == ["firing"]  # cooldown over: again
    assert [t.status for t in ev.evaluate([], 1400)] == ["resolved"]  # series gone: resolved
    assert ev.evaluate([], 1500) == []


def test_values_match_the_recording_rules() -> None:
    samples = [
        Sample("up", {"job": "atlas-api", "instance": "a"}, 0),
        Sample("up", {"job": "node", "instance": "b"}, 1),
        Sample("atlas_items", {**EXPORTER, "state": "queued"}, 7),
        Sample("atlas_items", {**EXPORTER, "state": "done"}, 9),
        Sample("atlas_data_dir_avail_bytes", dict(EXPORTER), 25),
        Sample("atlas_data_dir_size_bytes", dict(EXPORTER), 100),
    ]
    assert EVALUATORS["target_down"](samples, 0) == {(("job", "atlas-api"),): 1}
    assert EVALUATORS["queue_backlog"](samples, 0) == {(("instance", EXPORTER["instance"]),): 7}
    assert EVALUATORS["disk_usage"](samples, 0) == {(("instance", EXPORTER["instance"]),): 75.0}
