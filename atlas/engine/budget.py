"""How many items an engine may hold claimed and unfinished: its claim budget.

An engine that holds more than its workers can run keeps those items from every other engine on
the database. With a fixed budget of a whole claim batch (256 by default), the first of several
engines to wake took a small backlog alone: on PostgreSQL 2 and 4 engines processed 1.47x and
1.20x what one did (bench/scale.py). So the budget is what the workers run at once plus a
prefetch of about `prefetch_seconds` of work at the engine's recent completion rate, and at least
one more item per running slot, so a worker that finishes an item starts the next one without
waiting for a claim. Fast items (small documents on SQLite, thousands a second) get a larger
prefetch, which keeps claims few and large: a claim is a write transaction, and claiming a
running-slots' worth at a time cost the SQLite engine benchmark much of its throughput. The
budget never exceeds `ceiling` (what the engine held before this existed).

Pure logic: the caller passes the monotonic clock's readings in.
"""

from __future__ import annotations

# Completions are counted over windows this long; the rate is smoothed across windows.
RATE_WINDOW_SECONDS = 1.0
# Weight of the newest window in the smoothed rate: a change of pace shows within a few seconds.
RATE_SMOOTHING = 0.5


class ClaimBudget:
    """The claim budget of one engine with `running` slots (workers x concurrency)."""

    def __init__(self, running: int, ceiling: int, prefetch_seconds: float, now: float) -> None:
        self.running = max(1, running)
        self.ceiling = max(ceiling, 2 * self.running)
        self.prefetch_seconds = prefetch_seconds
        self.rate = 0.0  # items finished per second, smoothed
        self._window_start = now
        self._window_count = 0

    def finished(self, count: int, now: float) -> None:
        """`count` items finished (their results reached the engine) at `now`."""
        self._roll(now)
        self._window_count += count

    def capacity(self, now: float) -> int:
        """The most items the engine should hold claimed and unfinished now."""
        self._roll(now)
        prefetch = max(self.running, int(self.rate * self.prefetch_seconds))
        return min(self.ceiling, self.running + prefetch)

    def _roll(self, now: float) -> None:
        elapsed = now - self._window_start
        if elapsed < RATE_WINDOW_SECONDS:
            return
        # Each whole window elapsed weighs as one smoothing step, so an idle minute (no roll
        # meanwhile: nothing finished, no claim asked) leaves almost nothing of the old rate.
        keep = (1 - RATE_SMOOTHING) ** int(elapsed / RATE_WINDOW_SECONDS)
        self.rate = keep * self.rate + (1 - keep) * (self._window_count / elapsed)
        self._window_start = now
        self._window_count = 0
