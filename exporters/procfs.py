"""Parsers for the procfs files the system collector reads. Pure functions on text, so tests feed
them fixture files and the collector feeds them the live ones.

Field meanings follow proc(5) and node_exporter's procfs library; units are converted to the
base units node_exporter exports (seconds, bytes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# USER_HZ: /proc/stat and /proc/<pid>/stat count CPU time in these ticks; Linux fixes it at 100
# for user space on every architecture Atlas runs on (node_exporter's procfs assumes the same).
USER_HZ = 100.0
SECTOR_BYTES = 512  # /proc/diskstats counts 512-byte sectors whatever the device's block size

CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


@dataclass(frozen=True)
class Stat:
    """/proc/stat: per-CPU times in seconds by mode, and the kernel-wide counters."""

    cpus: list[tuple[str, tuple[float, ...]]]
    boot_time: float
    context_switches: float
    forks: float
    interrupts: float
    procs_running: float
    procs_blocked: float


def parse_stat(text: str) -> Stat:
    cpus: list[tuple[str, tuple[float, ...]]] = []
    fields: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        key = parts[0]
        if key.startswith("cpu") and key != "cpu":
            # Older kernels stop before steal; missing modes count as 0 like node_exporter.
            ticks = [float(v) / USER_HZ for v in parts[1 : 1 + len(CPU_MODES)]]
            ticks += [0.0] * (len(CPU_MODES) - len(ticks))
            cpus.append((key[3:], tuple(ticks)))
        elif key in ("btime", "ctxt", "processes", "procs_running", "procs_blocked", "intr"):
            fields[key] = float(parts[1])
    return Stat(
        cpus=cpus,
        boot_time=fields.get("btime", 0.0),
        context_switches=fields.get("ctxt", 0.0),
        forks=fields.get("processes", 0.0),
        interrupts=fields.get("intr", 0.0),
        procs_running=fields.get("procs_running", 0.0),
        procs_blocked=fields.get("procs_blocked", 0.0),
    )


def parse_loadavg(text: str) -> tuple[float, float, float]:
    one, five, fifteen = text.split()[:3]
    return float(one), float(five), float(fifteen)


_MEMINFO_NAME = re.compile(r"[()]")


def parse_meminfo(text: str) -> list[tuple[str, float]]:
    """[(node_exporter metric name, value)]: `Active(anon): 1 kB` -> node_memory_Active_anon_bytes."""
    out = []
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if not name or not parts:
            continue
        key = _MEMINFO_NAME.sub("_", name.strip()).rstrip("_")
        value = float(parts[0])
        if len(parts) > 1 and parts[1] == "kB":
            out.append((f"node_memory_{key}_bytes", value * 1024))
        else:
            out.append((f"node_memory_{key}", value))
    return out


# node_exporter's net/dev columns, in file order.
NETDEV_RECEIVE = ("bytes", "packets", "errs", "drop", "fifo", "frame", "compressed", "multicast")
NETDEV_TRANSMIT = ("bytes", "packets", "errs", "drop", "fifo", "colls", "carrier", "compressed")


def parse_netdev(text: str) -> list[tuple[str, list[float]]]:
    """[(device, 16 counters: receive columns then transmit columns)]."""
    out = []
    for line in text.splitlines()[2:]:
        device, _, rest = line.partition(":")
        values = rest.split()
        if len(values) >= 16:
            out.append((device.strip(), [float(v) for v in values[:16]]))
    return out


@dataclass(frozen=True)
class DiskStats:
    device: str
    reads_completed: float
    read_bytes: float
    read_time_seconds: float
    writes_completed: float
    written_bytes: float
    write_time_seconds: float
    io_now: float
    io_time_seconds: float
    io_time_weighted_seconds: float


def parse_diskstats(text: str) -> list[DiskStats]:
    out = []
    for line in text.splitlines():
        p = line.split()
        if len(p) < 14:
            continue
        out.append(
            DiskStats(
                device=p[2],
                reads_completed=float(p[3]),
                read_bytes=float(p[5]) * SECTOR_BYTES,
                read_time_seconds=float(p[6]) / 1000,
                writes_completed=float(p[7]),
                written_bytes=float(p[9]) * SECTOR_BYTES,
                write_time_seconds=float(p[10]) / 1000,
                io_now=float(p[11]),
                io_time_seconds=float(p[12]) / 1000,
                io_time_weighted_seconds=float(p[13]) / 1000,
            )
        )
    return out


def parse_file_nr(text: str) -> tuple[float, float]:
    """(allocated, maximum) from /proc/sys/fs/file-nr."""
    allocated, _unused, maximum = text.split()[:3]
    return float(allocated), float(maximum)


# node_exporter's default --collector.vmstat.fields.
VMSTAT_FIELDS = re.compile(r"^(oom_kill|pgpg|pswp|pg.*fault).*")


def parse_vmstat(text: str) -> list[tuple[str, float]]:
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and VMSTAT_FIELDS.match(parts[0]):
            out.append((parts[0], float(parts[1])))
    return out


@dataclass(frozen=True)
class Mount:
    device: str
    mountpoint: str
    fstype: str
    options: tuple[str, ...]


def _unescape(field: str) -> str:
    # The kernel escapes space, tab, newline and backslash in mount fields as \ooo octal.
    if "\\" not in field:
        return field
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mounts(text: str) -> list[Mount]:
    out = []
    for line in text.splitlines():
        p = line.split()
        if len(p) >= 4:
            out.append(Mount(_unescape(p[0]), _unescape(p[1]), p[2], tuple(p[3].split(","))))
    return out


@dataclass(frozen=True)
class PidStat:
    """/proc/<pid>/stat, the fields the service collector exports."""

    cpu_seconds: float
    threads: float
    start_ticks: float
    rss_pages: float


def parse_pid_stat(text: str) -> PidStat:
    # comm (field 2) may hold spaces and parentheses: fields after it follow the last ')'.
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state), so field N is rest[N - 3].
    return PidStat(
        cpu_seconds=(float(rest[11]) + float(rest[12])) / USER_HZ,
        threads=float(rest[17]),
        start_ticks=float(rest[19]),
        rss_pages=float(rest[21]),
    )
