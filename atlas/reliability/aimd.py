"""Adaptive concurrency (AIMD) from latency and errors; pure, no clock needed.

After Vector's Adaptive Request Concurrency: keep an exponentially weighted mean and deviation of
the round-trip time. On a success whose RTT is at or under the mean while the limit was reached,
the limit grows by one (additive increase); on an error, a timeout, or an RTT at or over
mean + 2.5 sigma it shrinks to 90% (multiplicative decrease). The limit stays in [1, max_limit].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EWMA_ALPHA = 0.4  # Vector's default decay for its RTT moving average
DEVIATIONS = 2.5
DECREASE = 0.9


@dataclass
class AdaptiveLimit:
    max_limit: int
    limit: float = 1.0
    mean: float = 0.0
    var: float = 0.0
    samples: int = 0

    @property
    def current(self) -> int:
        return max(1, int(self.limit))

    def record(self, rtt: float, *, ok: bool, saturated: bool) -> None:
        """One finished call: its RTT, whether it succeeded, whether the limit was reached."""
        # rtt > mean as well: with identical RTTs sigma is 0 and every sample would be an "outlier".
        high = self.samples >= 3 and rtt > self.mean and rtt >= self.mean + DEVIATIONS * math.sqrt(self.var)
        if not ok or high:
            self.limit = max(1.0, self.limit * DECREASE)
        elif saturated and (self.samples == 0 or rtt <= self.mean):
            self.limit = min(float(self.max_limit), self.limit + 1)
        if ok:  # errors and timeouts say nothing about the latency of answers
            if self.samples == 0:
                self.mean = rtt
            else:
                diff = rtt - self.mean
                self.mean += EWMA_ALPHA * diff
                self.var = (1 - EWMA_ALPHA) * (self.var + EWMA_ALPHA * diff * diff)
            self.samples += 1
