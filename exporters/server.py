"""Assembling the exporter: one registry of scrape-time collectors, served over HTTP.

The registry is the exporter's own (never prometheus_client's global one), so `atlas up` can run
the exporter beside the engine's registry in one process without either exporting the other's
families.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from atlas import __version__
from atlas.errors import ConfigError
from atlas.observability.metrics import family
from atlas.settings import Settings
from exporters.business import BusinessCollector
from exporters.datadir import DataDirCollector
from exporters.services import ServiceProcessCollector
from exporters.system import Filters, SystemCollector, SystemPaths


def build_commit() -> str:
    """The git commit Atlas runs from, or "unknown" outside a checkout (an installed wheel)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


class BuildInfoCollector(Collector):
    def __init__(self, version: str, commit: str) -> None:
        self.labels = (version, commit)

    def collect(self) -> Iterator[Metric]:
        info = family("atlas_build_info")
        info.add_metric(self.labels, 1)
        yield info


def build_registry(settings: Settings, *, commit: str | None = None) -> CollectorRegistry:
    """A fresh registry with the system, service process, business and build info collectors."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BuildInfoCollector(__version__, commit if commit is not None else build_commit()))
    registry.register(
        SystemCollector(
            SystemPaths(
                procfs=settings.exporter_procfs,
                sysfs=settings.exporter_sysfs,
                rootfs=settings.exporter_rootfs,
            ),
            Filters(
                mount_points_exclude=settings.exporter_mount_points_exclude,
                fs_types_exclude=settings.exporter_fs_types_exclude,
                disk_devices_exclude=settings.exporter_disk_devices_exclude,
                net_devices_exclude=settings.exporter_net_devices_exclude,
            ),
        )
    )
    registry.register(ServiceProcessCollector(settings.data_dir, settings.exporter_procfs))
    registry.register(BusinessCollector(settings.sqlite_path, dlq_top_n=settings.exporter_dlq_top_n))
    registry.register(DataDirCollector(settings.data_dir, settings.memory_budget_bytes))
    return registry


def start_exporter(settings: Settings, *, port: int | None = None) -> tuple[WSGIServer, threading.Thread]:
    """Serve /metrics from a daemon thread; returns the server (its port is server.server_port).

    Raises ConfigError naming ATLAS_EXPORTER_PORT/HOST when the address cannot be bound.
    """
    registry = build_registry(settings)
    port = settings.exporter_port if port is None else port
    try:
        return start_http_server(port, settings.exporter_host, registry=registry)
    except OSError as exc:
        raise ConfigError(
            "ATLAS_EXPORTER_PORT/ATLAS_EXPORTER_HOST: cannot listen on"
            f" {settings.exporter_host}:{port}: {exc}"
        ) from exc


def serve(settings: Settings, stop: threading.Event) -> int:
    """Serve until `stop` is set; returns the exit code."""
    server, thread = start_exporter(settings)
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    return 0
