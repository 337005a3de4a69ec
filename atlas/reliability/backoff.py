"""Capped exponential backoff with full jitter.

AWS Architecture Blog, "Exponential Backoff And Jitter" (Brooker, 2015): of the jitter schemes it
compares, full jitter spreads retries of many clients best for the least total work.
"""

from __future__ import annotations

from collections.abc import Callable


def backoff_ceiling(attempt: int, base_seconds: float, cap_seconds: float) -> float:
    """The largest delay after the `attempt`-th failure (1-based): min(cap, base * 2**(attempt-1))."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    # 2**64 already exceeds any sane cap; clamping the exponent keeps the float finite.
    return min(cap_seconds, base_seconds * 2.0 ** min(attempt - 1, 64))


def full_jitter(attempt: int, base_seconds: float, cap_seconds: float, rand: Callable[[], float]) -> float:
    """A delay drawn uniformly from [0, ceiling); `rand` returns floats in [0, 1)."""
    return rand() * backoff_ceiling(attempt, base_seconds, cap_seconds)
