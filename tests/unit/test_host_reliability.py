"""Breaker, AIMD and the per-host gate, on a fake clock: no sleeps."""

from __future__ import annotations

import asyncio

import pytest

from atlas.errors import Deferred
from atlas.pipeline.hosts import HostGate, HostPolicy
from atlas.reliability.aimd import AdaptiveLimit
from atlas.reliability.breaker import CLOSED, HALF_OPEN, OPEN, BreakerPolicy, CircuitBreaker

POLICY = BreakerPolicy(
    window_seconds=10, min_calls=10, failure_rate=0.5, cooldown_seconds=5, half_open_probes=2
)


def test_breaker_counts_a_rate_over_a_minimum_of_calls_not_a_streak() -> None:
    b = CircuitBreaker(POLICY)
    for i in range(9):  # 9 failures in a row: under min_calls, stays closed
        assert b.record(float(i) / 10, ok=False) is None
    assert b.state == CLOSED
    assert b.record(1.0, ok=False) == OPEN  # the 10th call: rate 1.0 >= 0.5


def test_breaker_ignores_a_trickle_of_failures_among_successes() -> None:
    b = CircuitBreaker(POLICY)
    for i in range(100):
        b.record(i * 0.1, ok=i % 4 != 0)  # 25% failures
    assert b.state == CLOSED


def test_old_outcomes_leave_the_window() -> None:
    b = CircuitBreaker(POLICY)
    for i in range(8):
        b.record(0.0 + i * 0.01, ok=False)
    for i in range(12):
        b.record(20.0 + i * 0.01, ok=True)  # the failures are 20 s old: out of the 10 s window
    assert b.record(20.5, ok=False) is None and b.state == CLOSED


def trip(b: CircuitBreaker, now: float) -> None:
    for _ in range(POLICY.min_calls):
        b.record(now, ok=False)


def test_open_half_open_probes_and_growing_cooldown() -> None:
    b = CircuitBreaker(POLICY)
    trip(b, 0.0)
    assert (b.state, b.retry_at) == (OPEN, 5.0)
    assert not b.allow(4.9)
    assert b.allow(5.0) and b.state == HALF_OPEN
    assert b.allow(5.0)  # second probe
    assert not b.allow(5.0)  # probes are limited
    assert b.record(5.1, ok=False) == OPEN
    assert b.retry_at == pytest.approx(5.1 + 10)  # the cool-down doubled
    assert b.allow(15.2) and b.allow(15.2)
    assert b.record(15.3, ok=True) is None
    assert b.record(15.3, ok=True) == CLOSED and b.trips == 0
    trip(b, 16.0)
    assert b.retry_at == 21.0  # recovered fully: back to the base cool-down


def test_aimd_grows_by_one_when_saturated_and_fast_and_shrinks_on_errors_and_outliers() -> None:
    lim = AdaptiveLimit(max_limit=10, limit=2)
    for _ in range(5):
        lim.record(0.02, ok=True, saturated=True)
    assert lim.current == 7
    lim.record(0.02, ok=True, saturated=False)  # not at the limit: no evidence more would help
    assert lim.current == 7
    lim.record(5.0, ok=False, saturated=True)
    assert lim.limit == pytest.approx(7 * 0.9)
    before = lim.limit
    lim.record(1.0, ok=True, saturated=True)  # far above mean + 2.5 sigma
    assert lim.limit == pytest.approx(before * 0.9)
    for _ in range(100):
        lim.record(5.0, ok=False, saturated=True)
    assert lim.current == 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_gate_defers_while_open_without_calling_and_tracks_a_bounded_number_of_hosts() -> None:
    clock = Clock()
    policy = HostPolicy(breaker=POLICY, rate_per_second=1000, burst=1000, max_hosts=3)
    gate = HostGate(policy, monotonic=clock, wall=clock)

    async def scenario() -> None:
        for _ in range(10):
            async with gate.call("bad.test"):
                pass  # ok stays False: a failure
        with pytest.raises(Deferred) as info:
            async with gate.call("bad.test"):
                raise AssertionError("an open breaker must not let the call through")
        assert info.value.until == pytest.approx(clock.now + 5) and info.value.host == "bad.test"
        for host in ("a.test", "b.test", "c.test", "d.test"):
            async with gate.call(host) as call:
                call.ok = True
        assert gate.tracked == 3

    asyncio.run(scenario())


def test_politeness_sleeps_short_waits_and_defers_long_ones() -> None:
    clock = Clock()
    gate = HostGate(HostPolicy(rate_per_second=0.1, burst=1), monotonic=clock, wall=clock)

    async def scenario() -> None:
        async with gate.call("slow.test") as call:
            call.ok = True
        with pytest.raises(Deferred, match="politeness") as info:
            async with gate.call("slow.test"):
                pass
        assert info.value.until == pytest.approx(clock.now + 10)

    asyncio.run(scenario())


def test_policy_from_settings_splits_budgets_between_workers_and_applies_per_host_overrides() -> None:
    from atlas.config.loader import load_settings

    s = load_settings(
        {
            "ATLAS_WORKERS": "2",
            "ATLAS_HOST_RATE_PER_SECOND": "4",
            "ATLAS_HOST_RATE_OVERRIDES": "slow.example=1",
            "ATLAS_HOST_MAX_CONCURRENCY": "8",
            "ATLAS_FETCH_HOST_CONCURRENCY": "Big.example=20",
        },
        files=False,
        secrets=False,
    )
    policy = HostPolicy.from_settings(s)
    assert policy.rate_per_second == 2 and policy.overrides == {"slow.example": 0.5}
    gate = HostGate(policy)
    assert gate.host("big.example").limit.max_limit == 10  # 20 over 2 workers
    assert gate.host("other.example").limit.max_limit == 4
