"""The exporter's own process, under client_python's standard process_* names, plus
process_virtual_memory_max_bytes, which node_exporter (Go client) exports and client_python does not."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporters.collectors.base import read_text

# Go's names for the machine, so the label has the values dashboards already see.
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "386", "armv7l": "arm"}
UNLIMITED = float(2**64 - 1)  # what the Go client reports for "unlimited" (RLIM_INFINITY as uint64)


class VirtualMemoryMaxCollector(Collector):
    def __init__(self, procfs_root: Path = Path("/proc"), pid: int | None = None) -> None:
        self.limits = procfs_root / str(pid if pid is not None else os.getpid()) / "limits"

    def collect(self) -> Iterator[Metric]:
        try:
            text = read_text(self.limits)
        except OSError:
            return
        for line in text.splitlines():
            if line.startswith("Max address space"):
                soft = line[len("Max address space") :].split()[0]
                value = UNLIMITED if soft == "unlimited" else float(soft)
                yield GaugeMetricFamily(
                    "process_virtual_memory_max_bytes",
                    "Maximum amount of virtual memory available in bytes.",
                    value=value,
                )


class NodeBuildInfoCollector(Collector):
    """node_exporter_build_info with node_exporter's label names, so "exporter version" panels and
    `count by (version) (node_exporter_build_info)` work. Values: version and revision are Atlas's,
    goversion carries the Python implementation and version (there is no Go), goos/goarch the
    platform."""

    def __init__(self, version: str, revision: str, branch: str = "") -> None:
        self.labels = (
            branch,
            _GOARCH.get(platform.machine(), platform.machine()),
            sys.platform,
            f"{platform.python_implementation().lower()}{platform.python_version()}",
            revision,
            version,
        )

    def collect(self) -> Iterator[Metric]:
        fam = GaugeMetricFamily(
            "node_exporter_build_info",
            "A metric with a constant '1' value labeled by version, revision, branch, goversion from which "
            "node_exporter was built, and the goos and goarch for the build.",
            labels=("branch", "goarch", "goos", "goversion", "revision", "version"),
        )
        fam.add_metric(self.labels, 1)
        yield fam
