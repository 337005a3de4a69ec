"""Circuit breaker on a failure *rate* over a sliding time window; the clock is passed in.

closed: calls flow; each outcome lands in a one-second bucket of the window. When at least
  `min_calls` calls in the window failed at `failure_rate` or more, the breaker opens.
open: calls are refused until `retry_at`; the cool-down doubles with each trip in a row
  (base, 2x, 4x, ... up to `max_cooldown_seconds`) so a host that stays down is asked rarely.
half-open: up to `half_open_probes` calls go through; if all succeed the breaker closes (and the
  trip count resets), one failure opens it again with a longer cool-down.

Counting a rate, not consecutive failures, means one slow trickle of errors among many successes
never trips it, and a burst of failures from a host that usually answers does.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True)
class BreakerPolicy:
    window_seconds: float = 30.0
    min_calls: int = 10
    failure_rate: float = 0.5
    cooldown_seconds: float = 5.0
    max_cooldown_seconds: float = 300.0
    half_open_probes: int = 2


@dataclass
class CircuitBreaker:
    policy: BreakerPolicy = field(default_factory=BreakerPolicy)
    state: str = CLOSED
    retry_at: float = 0.0  # open: when a probe may go
    trips: int = 0  # opens in a row without a full recovery
    # (second, calls, failures) buckets, oldest first.
    _buckets: deque[list[float]] = field(default_factory=deque)
    _probes_out: int = 0
    _probes_ok: int = 0

    def allow(self, now: float) -> bool:
        """May a call go now? In half-open this takes one of the limited probe slots."""
        if self.state == OPEN:
            if now < self.retry_at:
                return False
            self.state, self._probes_out, self._probes_ok = HALF_OPEN, 0, 0
        if self.state == HALF_OPEN:
            if self._probes_out >= self.policy.half_open_probes:
                return False
            self._probes_out += 1
        return True

    def next_try(self, now: float) -> float:
        """When a refused call may be tried again: the end of the cool-down, or (half-open, probes
        out) one base cool-down from now, by when the probes have usually answered."""
        return self.retry_at if self.state == OPEN else now + self.policy.cooldown_seconds

    def record(self, now: float, ok: bool) -> str | None:
        """Count an outcome; returns the new state when this outcome changed it."""
        if self.state == HALF_OPEN:
            if not ok:
                return self._open(now)
            self._probes_ok += 1
            if self._probes_ok >= self.policy.half_open_probes:
                self.state, self.trips = CLOSED, 0
                self._buckets.clear()
                return CLOSED
            return None
        if self.state == OPEN:
            return None  # a call that started before the trip: already counted against the host
        second = float(int(now))
        if self._buckets and self._buckets[-1][0] == second:
            bucket = self._buckets[-1]
        else:
            bucket = [second, 0.0, 0.0]
            self._buckets.append(bucket)
        bucket[1] += 1
        bucket[2] += 0 if ok else 1
        while self._buckets and self._buckets[0][0] <= now - self.policy.window_seconds:
            self._buckets.popleft()
        calls = sum(b[1] for b in self._buckets)
        failures = sum(b[2] for b in self._buckets)
        if calls >= self.policy.min_calls and failures / calls >= self.policy.failure_rate:
            return self._open(now)
        return None

    def _open(self, now: float) -> str:
        cooldown = min(
            self.policy.max_cooldown_seconds, self.policy.cooldown_seconds * 2.0 ** min(self.trips, 32)
        )
        self.state, self.retry_at = OPEN, now + cooldown
        self.trips += 1
        self._buckets.clear()
        return OPEN
