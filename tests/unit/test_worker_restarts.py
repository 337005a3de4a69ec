"""Worker restart bookkeeping (atlas.engine.pool): reasons, backoff, and the health it reports."""

from __future__ import annotations

from atlas.engine.pool import (
    LEASE_LAPSED_EXIT,
    RESTART_BACKOFF_CAP_SECONDS,
    STABLE_WORKER_SECONDS,
    Restarts,
    heartbeat_value,
    parse_heartbeat,
    restart_reason,
)


def test_reasons() -> None:
    assert restart_reason(ready=False, exitcode=1, timed_out=False) == "start_failed"
    assert restart_reason(ready=True, exitcode=-9, timed_out=True) == "timeout"
    assert restart_reason(ready=True, exitcode=LEASE_LAPSED_EXIT, timed_out=False) == "heartbeat"
    assert restart_reason(ready=True, exitcode=-11, timed_out=False) == "signal"
    assert restart_reason(ready=True, exitcode=3, timed_out=False) == "exit"


def test_idle_deaths_back_off_exponentially_up_to_the_cap_and_make_the_engine_unhealthy() -> None:
    r = Restarts(1)
    delays = []
    now = 0.0
    for _ in range(12):
        r.started(0, now)
        delays.append(r.lost(0, now=now + 0.1, running_items=False, what="exit, exit code 3"))
        now += 0.1 + delays[-1]
        assert r.due(now) == [0]
    assert delays[:5] == [0.0, 0.5, 1.0, 2.0, 4.0]
    assert max(delays) == RESTART_BACKOFF_CAP_SECONDS == delays[-1]
    status, why = r.status(now)
    assert status == "unhealthy" and "12 restarts in a row" in why and "exit code 3" in why


def test_a_finished_item_or_a_stable_worker_ends_the_streak() -> None:
    r = Restarts(2)
    for t in range(3):
        r.started(0, t)
        r.lost(0, now=t + 0.1, running_items=False, what="start_failed, exit code 1")
    assert r.status(3.0)[0] == "degraded"  # one slot of two failing
    r.started(0, 4.0)
    assert r.status(4.0 + STABLE_WORKER_SECONDS)[0] == "healthy"  # it stayed up
    for t in range(3):
        r.started(1, t)
        r.lost(1, now=t + 0.1, running_items=False, what="exit")
    r.finished_item(1)
    assert r.status(5.0) == ("healthy", "workers running")
    assert r.lost(1, now=6.0, running_items=False, what="exit") == 0.0  # a new streak starts at once


def test_deaths_while_running_items_restart_at_once_and_are_left_to_the_death_accounting() -> None:
    r = Restarts(1)
    for t in range(5):
        r.started(0, t)
        assert r.lost(0, now=t + 0.5, running_items=True, what="signal") == 0.0
    assert r.status(6.0)[0] == "healthy"


def test_heartbeat_values_round_trip_and_old_bare_times_read_as_healthy() -> None:
    assert parse_heartbeat(heartbeat_value(12.5, "unhealthy", "why")) == (12.5, "unhealthy", "why")
    assert parse_heartbeat("1700000000.25") == (1700000000.25, "healthy", "")
