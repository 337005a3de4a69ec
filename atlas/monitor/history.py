"""The agent's memory of scraped samples: a bounded ring per series, as long as its queries need.

A series is kept only when a compiled query reads it (atlas.alerting.query.ranges), and only for
the longest range any such query reads it over: `rate(x[3d])` keeps three days of x, an instant
selector keeps the latest two samples. Each ring holds ceil(window / scrape interval) + 2 samples
in two `array('d')` (16 bytes a sample): a 3d window at a 15s scrape interval is 17,282 samples,
about 270 KiB per series; a 1h window about 3.8 KiB; an instant-only series 32 bytes.

Staleness follows Prometheus: a series missing from its job's scrape (or the job failing to
answer) is stale from then on, so instant selectors stop seeing it at once rather than 5 minutes
later; range functions keep reading the samples it had.
"""

from __future__ import annotations

import math
import re
from array import array
from dataclasses import dataclass, field

from atlas.alerting.query import Sel

Labels = tuple[tuple[str, str], ...]  # sorted, `__name__` included
LOOKBACK_SECONDS = 300.0  # Prometheus's default lookback delta for instant selectors
BYTES_PER_SAMPLE = 16


def matches(sel: Sel, labels: dict[str, str]) -> bool:
    if labels.get("__name__") != sel.name:
        return False
    for key, op, value in sel.matchers:
        got = labels.get(key, "")
        if (op == "=" and got != value) or (op == "=~" and not re.fullmatch(value, got)):
            return False
    return True


@dataclass
class Ring:
    """The last `capacity` (timestamp, value) samples of one series, oldest overwritten first."""

    capacity: int
    ts: array[float] = field(default_factory=lambda: array("d"))
    vs: array[float] = field(default_factory=lambda: array("d"))
    head: int = 0  # index of the oldest sample once full
    stale_at: float | None = None

    def add(self, t: float, v: float) -> None:
        self.stale_at = None
        if len(self.ts) < self.capacity:
            self.ts.append(t)
            self.vs.append(v)
            return
        self.ts[self.head], self.vs[self.head] = t, v
        self.head = (self.head + 1) % self.capacity

    def samples(self, start: float, end: float) -> list[tuple[float, float]]:
        """Samples with start <= t <= end, oldest first (Prometheus 2.x ranges are closed)."""
        n = len(self.ts)
        order = range(self.head, self.head + n)
        return [(self.ts[i % n], self.vs[i % n]) for i in order if start <= self.ts[i % n] <= end]

    def latest(self, at: float) -> float | None:
        if not self.ts:
            return None
        i = (self.head - 1) % len(self.ts)
        t = self.ts[i]
        if t > at or at - t > LOOKBACK_SECONDS or (self.stale_at is not None and self.stale_at <= at):
            return None
        return self.vs[i]


class History:
    """Samples of the series `reads` select, each kept as long as its longest range.

    `reads`: (selector, range seconds; 0 for an instant selector) of every compiled query;
    `interval_seconds`: how often samples arrive (the agent's scrape interval), which sizes rings.
    """

    def __init__(self, reads: list[tuple[Sel, float]], interval_seconds: float) -> None:
        self.reads = reads
        self.interval = interval_seconds
        self.series: dict[Labels, Ring] = {}
        self.ignored: set[Labels] = set()
        self.by_job: dict[str, set[Labels]] = {}
        self._selected: dict[Sel, list[tuple[dict[str, str], Ring]]] = {}

    def capacity(self, labels: dict[str, str]) -> int | None:
        windows = [w for sel, w in self.reads if matches(sel, labels)]
        if not windows:
            return None
        return math.ceil(max(windows) / self.interval) + 2

    def ingest(self, job: str, t: float, samples: list[tuple[dict[str, str], float]]) -> None:
        """One scrape of `job` at time t: (labels with `__name__`, value) pairs. Series of the job
        absent from it become stale (an empty list: the scrape failed)."""
        present: set[Labels] = set()
        for labels, value in samples:
            key = tuple(sorted(labels.items()))
            if key in self.ignored:
                continue
            ring = self.series.get(key)
            if ring is None:
                cap = self.capacity(labels)
                if cap is None:
                    self.ignored.add(key)  # no query reads it: not worth a byte
                    continue
                ring = self.series[key] = Ring(cap)
                self._selected.clear()
            ring.add(t, value)
            present.add(key)
        known = self.by_job.setdefault(job, set())
        for key in known - present:
            ring = self.series[key]
            if ring.stale_at is None:
                ring.stale_at = t
            elif t - ring.stale_at > ring.capacity * self.interval + LOOKBACK_SECONDS:
                # Gone for longer than any query looks back: forget it, so label churn (a pid, a
                # host that went away) cannot grow the agent's memory without bound.
                del self.series[key]
                known.discard(key)
                self._selected.clear()
        known.update(present)

    def select(self, sel: Sel) -> list[tuple[dict[str, str], Ring]]:
        if sel not in self._selected:
            self._selected[sel] = [(dict(k), r) for k, r in self.series.items() if matches(sel, dict(k))]
        return self._selected[sel]

    def memory_bytes(self) -> int:
        """Upper bound of the sample memory once every ring is full."""
        return sum(r.capacity for r in self.series.values()) * BYTES_PER_SAMPLE
