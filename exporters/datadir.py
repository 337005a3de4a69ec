"""The data directory's filesystem and Atlas's own budgets, for the disk and memory alerts.

node_filesystem_* covers every mount; the alerts that protect Atlas need the one filesystem the
database lives on (the one the API's disk low-water guard measures) without guessing its
mountpoint in PromQL, so the exporter reports it directly: one statvfs per scrape.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from atlas.observability.metrics import family


class DataDirCollector(Collector):
    """atlas_data_dir_avail_bytes / atlas_data_dir_size_bytes and atlas_memory_budget_bytes."""

    def __init__(
        self,
        data_dir: Path,
        memory_budget_bytes: int,
        statvfs: Callable[[str], os.statvfs_result] = os.statvfs,
    ) -> None:
        self.data_dir = data_dir
        self.memory_budget_bytes = memory_budget_bytes
        self._statvfs = statvfs

    def collect(self) -> Iterator[Metric]:
        budget = family("atlas_memory_budget_bytes")
        budget.add_metric((), self.memory_budget_bytes)
        yield budget
        try:
            st = self._statvfs(str(self.data_dir))
        except OSError:
            return  # no data directory (yet): no disk series rather than a wrong one
        avail = family("atlas_data_dir_avail_bytes")
        avail.add_metric((), st.f_bavail * st.f_frsize)
        size = family("atlas_data_dir_size_bytes")
        size.add_metric((), st.f_blocks * st.f_frsize)
        yield from (avail, size)
