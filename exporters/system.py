"""System metrics under node_exporter's names, labels and units, read at scrape time.

Every value comes from files under an injected procfs/sysfs root and statvfs under an injected
rootfs, so tests point the collector at a fixture tree and a container points it at the host's
mounts (node_exporter's --path.procfs/--path.sysfs/--path.rootfs). A file that is missing or
unreadable drops its families from that scrape and nothing else: one broken source must not cost
the whole scrape.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, UnknownMetricFamily
from prometheus_client.registry import Collector

from exporters import procfs
from exporters.collectors.base import read_text
from exporters.procfs import CPU_MODES, NETDEV_RECEIVE, NETDEV_TRANSMIT

# Which netdev columns become metrics, with node_exporter's names.
_NET_COLUMNS = [(f"receive_{c}", i) for i, c in enumerate(NETDEV_RECEIVE)] + [
    (f"transmit_{c}", i + len(NETDEV_RECEIVE)) for i, c in enumerate(NETDEV_TRANSMIT)
]


@dataclass(frozen=True)
class SystemPaths:
    """Where the collector looks: node_exporter's --path.procfs, --path.sysfs and --path.rootfs."""

    procfs: Path = Path("/proc")
    sysfs: Path = Path("/sys")
    rootfs: Path = Path("/")


@dataclass(frozen=True)
class Filters:
    """Exclusion patterns, node_exporter's defaults unless configured (see atlas.settings)."""

    mount_points_exclude: str = ""
    fs_types_exclude: str = ""
    disk_devices_exclude: str = ""
    net_devices_exclude: str = ""


_read = read_text  # see read_text: cheaper than open() for the many small procfs files


def _compile(pattern: str) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern else None


class SystemCollector(Collector):
    """node_exporter-compatible cpu, stat (procs, boot time), loadavg, meminfo, filesystem, netdev,
    filefd, vmstat and uname families (diskstats, time and the rest: exporters.collectors)."""

    def __init__(
        self,
        paths: SystemPaths | None = None,
        filters: Filters | None = None,
        *,
        statvfs: Callable[[str], os.statvfs_result] = os.statvfs,
    ) -> None:
        self.paths = paths or SystemPaths()
        filters = filters or Filters()
        self._mount_exclude = _compile(filters.mount_points_exclude)
        self._fstype_exclude = _compile(filters.fs_types_exclude)
        self._net_exclude = _compile(filters.net_devices_exclude)
        self._statvfs = statvfs

    def parts(self) -> dict[str, Callable[[], Iterator[Metric]]]:
        """node_exporter's collector names -> the functions that read them (see NodeCollector)."""
        return {
            "cpu": self._cpu,
            "stat": self._stat,
            "loadavg": self._loadavg,
            "meminfo": self._meminfo,
            "filesystem": self._filesystems,
            "netdev": self._netdev,
            "filefd": self._filefd,
            "vmstat": self._vmstat,
            "uname": self._uname_info,
        }

    def collect(self) -> Iterator[Metric]:
        for part in self.parts().values():
            try:
                yield from list(part())
            except (OSError, ValueError, IndexError):
                # A missing or malformed source drops only its own families (see module doc).
                continue

    # -- /proc/stat ------------------------------------------------------------------------------

    def _cpu(self) -> Iterator[Metric]:
        stat = procfs.parse_stat(_read(self.paths.procfs / "stat"))
        cpu = CounterMetricFamily(
            "node_cpu_seconds_total", "Seconds the CPUs spent in each mode.", labels=("cpu", "mode")
        )
        for name, seconds in stat.cpus:
            for mode, value in zip(CPU_MODES, seconds, strict=True):
                cpu.add_metric((name, mode), value)
        guest = CounterMetricFamily(
            "node_cpu_guest_seconds_total",
            "Seconds the CPUs spent in guests (VMs) for each mode.",
            labels=("cpu", "mode"),
        )
        for name, (user, nice) in stat.guests:
            guest.add_metric((name, "user"), user)
            guest.add_metric((name, "nice"), nice)
        yield from (cpu, guest)

    def _stat(self) -> Iterator[Metric]:
        stat = procfs.parse_stat(_read(self.paths.procfs / "stat"))
        yield GaugeMetricFamily(
            "node_boot_time_seconds", "Node boot time, in unixtime.", value=stat.boot_time
        )
        yield CounterMetricFamily(
            "node_context_switches_total", "Total number of context switches.", value=stat.context_switches
        )
        yield CounterMetricFamily("node_forks_total", "Total number of forks.", value=stat.forks)
        yield CounterMetricFamily(
            "node_intr_total", "Total number of interrupts serviced.", value=stat.interrupts
        )
        yield GaugeMetricFamily(
            "node_procs_running", "Number of processes in runnable state.", value=stat.procs_running
        )
        yield GaugeMetricFamily(
            "node_procs_blocked",
            "Number of processes blocked waiting for I/O to complete.",
            value=stat.procs_blocked,
        )

    def _loadavg(self) -> Iterator[Metric]:
        one, five, fifteen = procfs.parse_loadavg(_read(self.paths.procfs / "loadavg"))
        yield GaugeMetricFamily("node_load1", "1m load average.", value=one)
        yield GaugeMetricFamily("node_load5", "5m load average.", value=five)
        yield GaugeMetricFamily("node_load15", "15m load average.", value=fifteen)

    def _meminfo(self) -> Iterator[Metric]:
        for name, value in procfs.parse_meminfo(_read(self.paths.procfs / "meminfo")):
            field = name[len("node_memory_") :]
            yield GaugeMetricFamily(name, f"Memory information field {field}.", value=value)

    def _vmstat(self) -> Iterator[Metric]:
        for field, value in procfs.parse_vmstat(_read(self.paths.procfs / "vmstat")):
            # node_exporter exports vmstat fields untyped; keep the type so rules see the same thing.
            yield UnknownMetricFamily(
                f"node_vmstat_{field}", f"/proc/vmstat information field {field}.", value=value
            )

    def _filefd(self) -> Iterator[Metric]:
        allocated, maximum = procfs.parse_file_nr(_read(self.paths.procfs / "sys/fs/file-nr"))
        yield GaugeMetricFamily(
            "node_filefd_allocated", "File descriptor statistics: allocated.", value=allocated
        )
        yield GaugeMetricFamily("node_filefd_maximum", "File descriptor statistics: maximum.", value=maximum)

    # -- filesystems -----------------------------------------------------------------------------

    def _mounts_text(self) -> str:
        # node_exporter reads pid 1's mount table (the host's, when procfs is the host's) and falls
        # back to our own when pid 1 is not readable (a container without the host pid namespace).
        try:
            return _read(self.paths.procfs / "1/mounts")
        except OSError:
            return _read(self.paths.procfs / "self/mounts")

    def _filesystems(self) -> Iterator[Metric]:
        labels = ("device", "fstype", "mountpoint")
        fams = {
            "size": GaugeMetricFamily(
                "node_filesystem_size_bytes", "Filesystem size in bytes.", labels=labels
            ),
            "free": GaugeMetricFamily(
                "node_filesystem_free_bytes", "Filesystem free space in bytes.", labels=labels
            ),
            "avail": GaugeMetricFamily(
                "node_filesystem_avail_bytes",
                "Filesystem space available to non-root users in bytes.",
                labels=labels,
            ),
            "files": GaugeMetricFamily(
                "node_filesystem_files", "Filesystem total file nodes.", labels=labels
            ),
            "files_free": GaugeMetricFamily(
                "node_filesystem_files_free", "Filesystem total free file nodes.", labels=labels
            ),
            "readonly": GaugeMetricFamily(
                "node_filesystem_readonly", "Filesystem read-only status.", labels=labels
            ),
            "device_error": GaugeMetricFamily(
                "node_filesystem_device_error",
                "Whether an error occurred while getting statistics for the given device.",
                labels=labels,
            ),
        }
        rootfs = str(self.paths.rootfs).rstrip("/")
        seen: set[tuple[str, str]] = set()
        for mount in reversed(procfs.parse_mounts(self._mounts_text())):
            mountpoint = mount.mountpoint
            if rootfs and mountpoint.startswith(rootfs + "/"):
                mountpoint = mountpoint[len(rootfs) :]  # our own view of a host mount
            elif rootfs and mountpoint == rootfs:
                mountpoint = "/"
            if self._mount_exclude and self._mount_exclude.search(mountpoint):
                continue
            if self._fstype_exclude and self._fstype_exclude.search(mount.fstype):
                continue
            # A mount point mounted over is listed twice; the later entry is what is visible.
            if (mount.device, mountpoint) in seen:
                continue
            seen.add((mount.device, mountpoint))
            key = (mount.device, mount.fstype, mountpoint)
            try:
                st = self._statvfs(rootfs + mountpoint if rootfs else mountpoint)
            except OSError:
                fams["device_error"].add_metric(key, 1)
                continue
            fams["device_error"].add_metric(key, 0)
            fams["size"].add_metric(key, st.f_blocks * st.f_frsize)
            fams["free"].add_metric(key, st.f_bfree * st.f_frsize)
            fams["avail"].add_metric(key, st.f_bavail * st.f_frsize)
            fams["files"].add_metric(key, st.f_files)
            fams["files_free"].add_metric(key, st.f_ffree)
            fams["readonly"].add_metric(key, 1 if "ro" in mount.options else 0)
        yield from fams.values()

    # -- devices ---------------------------------------------------------------------------------

    def _netdev(self) -> Iterator[Metric]:
        fams = [
            (
                CounterMetricFamily(
                    f"node_network_{name}_total", f"Network device statistic {name}.", labels=("device",)
                ),
                column,
            )
            for name, column in _NET_COLUMNS
        ]
        nohandler = CounterMetricFamily(
            "node_network_receive_nohandler_total",
            "Network device statistic receive_nohandler.",
            labels=("device",),
        )
        for device, values in procfs.parse_netdev(_read(self.paths.procfs / "net/dev")):
            if self._net_exclude and self._net_exclude.search(device):
                continue
            for fam, column in fams:
                fam.add_metric((device,), values[column])
            # /proc/net/dev lacks rx_nohandler, which node_exporter reads over netlink; sysfs has it.
            try:
                nohandler.add_metric(
                    (device,),
                    float(_read(self.paths.sysfs / "class/net" / device / "statistics/rx_nohandler")),
                )
            except (OSError, ValueError):
                pass
        for fam, _ in fams:
            yield fam
        yield nohandler

    # -- identity --------------------------------------------------------------------------------

    def _uname_info(self) -> Iterator[Metric]:
        # uname(2)'s fields as procfs shows them, so a fixture tree (or the host's procfs) decides;
        # read each scrape because the host name can change.
        kernel = self.paths.procfs / "sys/kernel"

        def field(name: str, fallback: str) -> str:
            try:
                return _read(kernel / name).strip()
            except OSError:
                return fallback

        un = os.uname()
        uname = {
            "domainname": field("domainname", "(none)"),
            "machine": field("arch", un.machine),
            "nodename": field("hostname", un.nodename),
            "release": field("osrelease", un.release),
            "sysname": field("ostype", un.sysname),
            "version": field("version", un.version),
        }
        fam = GaugeMetricFamily(
            "node_uname_info",
            "Labeled system information as provided by the uname system call.",
            labels=tuple(uname),
        )
        fam.add_metric(tuple(uname.values()), 1)
        yield fam
