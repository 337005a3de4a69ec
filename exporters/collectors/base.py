"""Running named collectors the way node_exporter does: each one timed, its failure costing only
its own families, and node_scrape_collector_{duration_seconds,success}{collector} per scrape."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from atlas.logging import get_logger

Part = Callable[[], Iterable[Metric]]


class NoData(Exception):
    """The collector's source does not exist on this host (node_exporter's ErrNoData)."""


# What a part may raise when its source is missing, unreadable or malformed: anything else is a
# bug and propagates (the scrape answers 500 and the traceback is logged).
PART_ERRORS = (OSError, ValueError, IndexError, KeyError, NoData)


def read_text(path: Path) -> str:
    """A procfs/sysfs file's text. os.open/os.read instead of open(): a scrape opens ~200 small
    files, and the io stack's buffered text wrapper costs several times the read itself."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class NodeCollector(Collector):
    """Runs `parts` in order on every scrape. A part that raises one of PART_ERRORS contributes no
    families and success 0 (node_exporter sends a partial scrape rather than none)."""

    def __init__(self, parts: Mapping[str, Part], *, timer: Callable[[], float] = time.perf_counter) -> None:
        self.parts = dict(parts)
        self.timer = timer
        self._log = get_logger("atlas.exporter")
        self._failing: set[str] = set()

    def collect(self) -> Iterator[Metric]:
        duration = GaugeMetricFamily(
            "node_scrape_collector_duration_seconds",
            "node_exporter: Duration of a collector scrape.",
            labels=("collector",),
        )
        success = GaugeMetricFamily(
            "node_scrape_collector_success",
            "node_exporter: Whether a collector succeeded.",
            labels=("collector",),
        )
        for name, part in self.parts.items():
            started = self.timer()
            try:
                families = list(part())
                ok = 1.0
            except PART_ERRORS as exc:
                families, ok = [], 0.0
                if name not in self._failing:  # log changes of state, not every scrape
                    self._log.info("collector failed", collector=name, error=str(exc) or type(exc).__name__)
                    self._failing.add(name)
            else:
                self._failing.discard(name)
            duration.add_metric((name,), self.timer() - started)
            success.add_metric((name,), ok)
            yield from families
        yield duration
        yield success
