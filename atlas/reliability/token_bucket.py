"""Token bucket: `rate` tokens a second up to `burst`; the clock is passed in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenBucket:
    rate: float  # tokens added per second
    burst: float  # most tokens held
    tokens: float = -1.0  # < 0: start full
    updated: float = 0.0

    def take(self, now: float, n: float = 1.0) -> float:
        """Take `n` tokens if there are; returns 0.0 on success, else seconds until there will be."""
        if self.tokens < 0:
            self.tokens, self.updated = self.burst, now
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.updated = now
        if self.tokens >= n:
            self.tokens -= n
            return 0.0
        if self.rate <= 0:
            return float("inf")
        return (n - self.tokens) / self.rate
