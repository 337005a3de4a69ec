"""Assembling the exporter: one registry of scrape-time collectors, served over HTTP.

The registry is the exporter's own (never prometheus_client's global one), so `atlas up` can run
the exporter beside the engine's registry in one process without either exporting the other's
families.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from atlas import __version__
from atlas.errors import ConfigError
from atlas.observability.metrics import family
from atlas.ops.sdnotify import Liveness, Notifier, Watchdog, loop_alive
from atlas.settings import Settings
from atlas.store import open_store
from exporters.business import BusinessCollector
from exporters.collectors import kernel, net
from exporters.collectors.base import NodeCollector, Part
from exporters.collectors.disk import DiskstatsCollector
from exporters.collectors.netclass import NetclassCollector
from exporters.collectors.process import NodeBuildInfoCollector, VirtualMemoryMaxCollector
from exporters.collectors.textfile import TextfileCollector
from exporters.datadir import DataDirCollector
from exporters.exposition import start_server
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


def node_parts(settings: Settings) -> dict[str, Part]:
    """Every node_exporter collector Atlas implements, by node_exporter's name, in its order."""
    paths = SystemPaths(
        procfs=settings.exporter_procfs, sysfs=settings.exporter_sysfs, rootfs=settings.exporter_rootfs
    )
    system = SystemCollector(
        paths,
        Filters(
            mount_points_exclude=settings.exporter_mount_points_exclude,
            fs_types_exclude=settings.exporter_fs_types_exclude,
            net_devices_exclude=settings.exporter_net_devices_exclude,
        ),
    )
    proc, sysfs, rootfs = paths.procfs, paths.sysfs, paths.rootfs
    parts: dict[str, Part] = {
        "arp": net.ArpCollector(proc, settings.exporter_arp_devices_exclude),
        "conntrack": partial(net.conntrack, proc),
        "diskstats": DiskstatsCollector(
            proc, rootfs / "run/udev/data", settings.exporter_disk_devices_exclude
        ),
        "entropy": partial(kernel.entropy, proc),
        "netclass": NetclassCollector(sysfs, settings.exporter_netclass_devices_exclude),
        "netstat": net.NetstatCollector(proc, settings.exporter_netstat_fields),
        "os": kernel.OSCollector(rootfs),
        "pressure": partial(kernel.pressure, proc),
        "selinux": kernel.SelinuxCollector(sysfs, rootfs),
        "sockstat": partial(net.sockstat, proc),
        "softnet": partial(net.softnet, proc),
        "textfile": TextfileCollector(settings.exporter_textfile_dir),
        "time": kernel.TimeCollector(sysfs),
        "timex": kernel.timex,
        "udp_queues": partial(net.udp_queues, proc),
        **system.parts(),
    }
    return dict(sorted(parts.items()))


ATLAS_COLLECTORS = ("business", "services")


def build_registry(settings: Settings, *, commit: str | None = None) -> CollectorRegistry:
    """A fresh registry with the node collectors (minus ATLAS_EXPORTER_COLLECTORS_DISABLED), the
    exporter's own process and build info, service processes and business gauges.

    Raises ConfigError naming ATLAS_EXPORTER_COLLECTORS_DISABLED for a collector name it does not know.
    """
    parts = node_parts(settings)
    disabled = set(settings.exporter_collectors_disabled)
    unknown = sorted(disabled - set(parts) - set(ATLAS_COLLECTORS))
    if unknown:
        raise ConfigError(
            f"ATLAS_EXPORTER_COLLECTORS_DISABLED: unknown collector {', '.join(unknown)}"
            f" (known: {', '.join(sorted([*parts, *ATLAS_COLLECTORS]))})"
        )
    revision = commit if commit is not None else build_commit()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BuildInfoCollector(__version__, revision))
    registry.register(NodeBuildInfoCollector(__version__, revision))
    # The exporter's own process under the standard names ("exporter process" panels).
    ProcessCollector(registry=registry, proc=str(settings.exporter_procfs))
    registry.register(VirtualMemoryMaxCollector(settings.exporter_procfs))
    registry.register(NodeCollector({k: v for k, v in parts.items() if k not in disabled}))
    if "services" not in disabled:
        registry.register(ServiceProcessCollector(settings.data_dir, settings.exporter_procfs))
    if "business" not in disabled:
        registry.register(
            BusinessCollector(
                partial(open_store, settings, migrate=False), dlq_top_n=settings.exporter_dlq_top_n
            )
        )
    registry.register(DataDirCollector(settings.data_dir, settings.memory_budget_bytes))
    return registry


def start_exporter(settings: Settings, *, port: int | None = None) -> tuple[WSGIServer, threading.Thread]:
    """Serve /metrics from a daemon thread; returns the server (its port is server.server_port).

    Raises ConfigError naming ATLAS_EXPORTER_PORT/HOST when the address cannot be bound.
    """
    registry = build_registry(settings)
    port = settings.exporter_port if port is None else port
    try:
        return start_server(registry, port, settings.exporter_host)
    except OSError as exc:
        raise ConfigError(
            "ATLAS_EXPORTER_PORT/ATLAS_EXPORTER_HOST: cannot listen on"
            f" {settings.exporter_host}:{port}: {exc}"
        ) from exc


def serve(settings: Settings, stop: threading.Event, notifier: Notifier | None = None) -> int:
    """Serve until `stop` is set; returns the exit code. With `notifier` (under systemd): READY=1
    once listening, WATCHDOG=1 while the server's accept loop turns."""
    server, thread = start_exporter(settings)
    watchdog = None
    if notifier is not None and notifier.enabled:
        liveness = Liveness()
        # serve_forever() calls service_actions() after every request and every 0.5 s poll: it is
        # the loop's own heartbeat. start_http_server builds the server class itself, so the hook
        # goes on the instance (BaseServer's own service_actions does nothing).
        server.service_actions = liveness.beat  # type: ignore[method-assign]
        watchdog = Watchdog(notifier, loop_alive(liveness, notifier)).start()
        notifier.ready()
    try:
        stop.wait()
    finally:
        if watchdog is not None:
            watchdog.stop()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    return 0
