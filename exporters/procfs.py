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
    # (cpu, (guest, guest_nice)) seconds: time spent running virtual CPUs, also counted in user/nice.
    guests: list[tuple[str, tuple[float, float]]]
    boot_time: float
    context_switches: float
    forks: float
    interrupts: float
    procs_running: float
    procs_blocked: float


def parse_stat(text: str) -> Stat:
    cpus: list[tuple[str, tuple[float, ...]]] = []
    guests: list[tuple[str, tuple[float, float]]] = []
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
            guest = [float(v) / USER_HZ for v in parts[9:11]] + [0.0, 0.0]
            guests.append((key[3:], (guest[0], guest[1])))
        elif key in ("btime", "ctxt", "processes", "procs_running", "procs_blocked", "intr"):
            fields[key] = float(parts[1])
    return Stat(
        cpus=cpus,
        guests=guests,
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


# /proc/diskstats columns after major, minor and name, with node_exporter's metric name, the
# factor to its base unit and its type; kernels print 11 (< 4.18), 15 (discards) or 17 (flushes)
# of them, and node_exporter exports as many as the kernel prints.
MS = -1000.0  # a negative factor divides: milliseconds / 1000 is exact where * 0.001 is not
DISKSTATS_COLUMNS: tuple[tuple[str, float, str], ...] = (
    ("reads_completed_total", 1.0, "counter"),
    ("reads_merged_total", 1.0, "counter"),
    ("read_bytes_total", SECTOR_BYTES, "counter"),
    ("read_time_seconds_total", MS, "counter"),
    ("writes_completed_total", 1.0, "counter"),
    ("writes_merged_total", 1.0, "counter"),
    ("written_bytes_total", SECTOR_BYTES, "counter"),
    ("write_time_seconds_total", MS, "counter"),
    ("io_now", 1.0, "gauge"),
    ("io_time_seconds_total", MS, "counter"),
    ("io_time_weighted_seconds_total", MS, "counter"),
    ("discards_completed_total", 1.0, "counter"),
    ("discards_merged_total", 1.0, "counter"),
    ("discarded_sectors_total", 1.0, "counter"),  # node_exporter keeps these in sectors
    ("discard_time_seconds_total", MS, "counter"),
    ("flush_requests_total", 1.0, "counter"),
    ("flush_requests_time_seconds_total", MS, "counter"),
)


@dataclass(frozen=True)
class DiskStats:
    device: str
    major: str
    minor: str
    values: tuple[float, ...]  # DISKSTATS_COLUMNS' values in base units, as many as the kernel prints

    def value(self, column: str) -> float:
        for (name, _, _), v in zip(DISKSTATS_COLUMNS, self.values, strict=False):
            if name == column:
                return v
        raise KeyError(column)


def parse_diskstats(text: str) -> list[DiskStats]:
    out = []
    for line in text.splitlines():
        p = line.split()
        if len(p) < 14:
            continue
        values = tuple(
            float(raw) / -factor if factor < 0 else float(raw) * factor
            for raw, (_, factor, _) in zip(p[3:], DISKSTATS_COLUMNS, strict=False)
        )
        out.append(DiskStats(device=p[2], major=p[0], minor=p[1], values=values))
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
