"""Per-host reliability for fetches: circuit breaker, politeness bucket, adaptive concurrency.

One HostGate lives in each worker process and wraps every outgoing request:

    async with gate.call(host) as call:
        ...request...
        call.ok = True            # left False when the block raises or the host misbehaved

- an open breaker raises Deferred at once, with `until` = when the breaker may half-open, so
  the engine requeues the item without spending an attempt;
- the host's token bucket is charged; a short wait is slept, a long one is a Deferred too;
- the call waits for a free slot under the host's and the global AIMD limits.

Hosts are tracked in an LRU of `max_hosts` entries: memory and metric series stay bounded however
many hosts the web offers. Each worker process keeps its own gate (workers share nothing): the
politeness rate and per-host concurrency are split evenly between the W worker processes, and
each process's breaker sees its own calls (with W workers a failing host may get W probes).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from atlas.errors import Deferred
from atlas.reliability.aimd import AdaptiveLimit
from atlas.reliability.breaker import CLOSED, HALF_OPEN, OPEN, BreakerPolicy, CircuitBreaker
from atlas.reliability.token_bucket import TokenBucket
from atlas.settings import Settings

# A politeness wait longer than this gives the worker slot back (Deferred) instead of sleeping.
MAX_POLITE_SLEEP_SECONDS = 2.0
STATE_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


@dataclass
class _Host:
    breaker: CircuitBreaker
    bucket: TokenBucket
    limit: AdaptiveLimit
    in_flight: int = 0


@dataclass
class Call:
    host: str
    ok: bool = False
    started: float = 0.0


@dataclass
class HostPolicy:
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    rate_per_second: float = 2.0
    burst: int = 4
    overrides: dict[str, float] = field(default_factory=dict)
    host_max_concurrency: int = 8
    concurrency_overrides: dict[str, int] = field(default_factory=dict)
    global_max_concurrency: int = 64
    max_hosts: int = 1024

    @classmethod
    def from_settings(cls, s: Settings, workers: int | None = None) -> HostPolicy:
        """The policy for one of `workers` processes (default: the engine's worker count)."""
        workers = max(1, workers or s.worker_count)
        overrides = dict(s.host_rate_overrides)  # host=rate pairs, checked when settings load
        return cls(
            breaker=BreakerPolicy(
                window_seconds=s.breaker_window_seconds,
                min_calls=s.breaker_min_calls,
                failure_rate=s.breaker_failure_rate,
                cooldown_seconds=s.breaker_cooldown_seconds,
                max_cooldown_seconds=s.breaker_max_cooldown_seconds,
                half_open_probes=s.breaker_half_open_probes,
            ),
            # Each worker process has its own gate: it gets its share of the politeness budget and
            # of the per-host concurrency, so a host sees the configured totals, not W times them.
            rate_per_second=s.host_rate_per_second / workers,
            burst=max(1, s.host_rate_burst // workers),
            overrides={host: rate / workers for host, rate in overrides.items()},
            host_max_concurrency=max(1, s.host_max_concurrency // workers),
            concurrency_overrides={
                host.lower(): max(1, n // workers) for host, n in s.fetch_host_concurrency
            },
            global_max_concurrency=s.fetch_max_concurrency,
            max_hosts=s.max_tracked_hosts,
        )


class HostGate:
    def __init__(
        self,
        policy: HostPolicy,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self.monotonic, self.wall = monotonic, wall
        self._hosts: OrderedDict[str, _Host] = OrderedDict()
        self._global = AdaptiveLimit(
            policy.global_max_concurrency, limit=float(policy.global_max_concurrency)
        )
        self._in_flight = 0
        self._changed = asyncio.Condition()
        # Cumulative counts, reported to the supervisor with the per-host state (see snapshot).
        self.transitions: Counter[tuple[str, str]] = Counter()  # (host, state entered)
        self.rate_limited: Counter[tuple[str, str]] = Counter()  # (host, wait | defer)

    def host(self, host: str) -> _Host:
        """The host's state, created (and the least recently used evicted) as needed."""
        state = self._hosts.get(host)
        if state is not None:
            self._hosts.move_to_end(host)
            return state
        rate = self.policy.overrides.get(host, self.policy.rate_per_second)
        ceiling = self.policy.concurrency_overrides.get(host, self.policy.host_max_concurrency)
        state = _Host(
            CircuitBreaker(self.policy.breaker),
            TokenBucket(rate=rate, burst=float(self.policy.burst)),
            AdaptiveLimit(ceiling, limit=float(ceiling)),
        )
        self._hosts[host] = state
        while len(self._hosts) > self.policy.max_hosts:
            old, evicted = next(iter(self._hosts.items()))
            if evicted.in_flight:  # never forget a host mid-call; the LRU may run over briefly
                break
            del self._hosts[old]
            for counter in (self.transitions, self.rate_limited):
                for key in [k for k in counter if k[0] == old]:
                    del counter[key]
        return state

    @property
    def tracked(self) -> int:
        return len(self._hosts)

    @asynccontextmanager
    async def call(self, host: str) -> AsyncIterator[Call]:
        """Admit one request to `host` (see the module docstring); raises Deferred when not now."""
        state = self.host(host)
        now = self.monotonic()
        if not state.breaker.allow(now):
            raise Deferred(
                f"circuit breaker for {host} is open after repeated failures",
                until=self.wall() + max(0.0, state.breaker.next_try(now) - now),
                stage="fetch",
                host=host,
            )
        await self._polite(host, state)
        async with self._changed:
            await self._changed.wait_for(
                lambda: state.in_flight < state.limit.current and self._in_flight < self._global.current
            )
            state.in_flight += 1
            self._in_flight += 1
            saturated = state.in_flight >= state.limit.current
            global_saturated = self._in_flight >= self._global.current
        call = Call(host, started=self.monotonic())
        try:
            yield call
        finally:
            rtt = self.monotonic() - call.started
            state.limit.record(rtt, ok=call.ok, saturated=saturated)
            if call.ok:  # one failing host must not throttle the others: the global limit reads latency
                self._global.record(rtt, ok=True, saturated=global_saturated)
            changed = state.breaker.record(self.monotonic(), call.ok)
            if changed is not None:
                self.transitions[(host, changed)] += 1
            async with self._changed:
                state.in_flight -= 1
                self._in_flight -= 1
                self._changed.notify_all()

    def snapshot(self) -> dict[str, Any]:
        """This gate's state for the supervisor's metrics (atlas.engine.host_metrics): per host
        (breaker state value, concurrency limit, in flight), cumulative counters, the global limit."""
        return {
            "hosts": {
                h: (STATE_VALUE[st.breaker.state], st.limit.current, st.in_flight)
                for h, st in self._hosts.items()
            },
            "transitions": dict(self.transitions),
            "rate_limited": dict(self.rate_limited),
            "global_limit": self._global.current,
        }

    async def _polite(self, host: str, state: _Host) -> None:
        while True:
            wait = state.bucket.take(self.monotonic())
            if wait <= 0:
                return
            if wait > MAX_POLITE_SLEEP_SECONDS:
                self.rate_limited[(host, "defer")] += 1
                raise Deferred(
                    f"politeness: {host} is rate limited to {state.bucket.rate:g}/s",
                    until=self.wall() + wait,
                    stage="fetch",
                    host=host,
                )
            self.rate_limited[(host, "wait")] += 1
            await asyncio.sleep(wait)
