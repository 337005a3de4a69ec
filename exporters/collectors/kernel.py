"""node_exporter's clock and kernel-state collectors: timex (adjtimex), time (clock, zone,
clocksources), pressure (PSI), entropy, os (os-release) and selinux. node_exporter 1.5's names,
types, help texts and units."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters.collectors.base import NoData, gauge, read_text


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h> (glibc, 64- and 32-bit alike: longs and ints, padding by ctypes).
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    ]


TIME_ERROR = 5  # adjtimex's return value when the clock is not synchronised
STA_NANO = 0x2000  # offset and jitter in ns instead of us
PPM16 = 1_000_000.0 * 65536.0  # freq, ppsfreq and stabil are scaled ppm with 16 fraction bits
_libc: ctypes.CDLL | None = None


def adjtimex() -> tuple[int, _Timex]:
    """(clock state, struct timex) read with modes = 0, which changes nothing and needs no privilege."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    tx = _Timex()
    state = int(_libc.adjtimex(ctypes.byref(tx)))
    if state == -1:
        errno = ctypes.get_errno()
        raise OSError(errno, f"adjtimex: {os.strerror(errno)}")
    return state, tx


def timex(read: Callable[[], tuple[int, _Timex]] = adjtimex) -> Iterator[Metric]:
    state, tx = read()
    divisor = 1e9 if tx.status & STA_NANO else 1e6
    g, c = gauge, CounterMetricFamily
    yield g(
        "node_timex_sync_status",
        "Is clock synchronized to a reliable server (1 = yes, 0 = no).",
        0 if state == TIME_ERROR else 1,
    )
    yield g(
        "node_timex_offset_seconds",
        "Time offset in between local system and reference clock.",
        tx.offset / divisor,
    )
    yield g("node_timex_frequency_adjustment_ratio", "Local clock frequency adjustment.", 1 + tx.freq / PPM16)
    yield g("node_timex_maxerror_seconds", "Maximum error in seconds.", tx.maxerror / 1e6)
    yield g("node_timex_estimated_error_seconds", "Estimated error in seconds.", tx.esterror / 1e6)
    yield g("node_timex_status", "Value of the status array bits.", tx.status)
    yield g("node_timex_loop_time_constant", "Phase-locked loop time constant.", tx.constant)
    yield g("node_timex_tick_seconds", "Seconds between clock ticks.", tx.tick / 1e6)
    yield g("node_timex_pps_frequency_hertz", "Pulse per second frequency.", tx.ppsfreq / PPM16)
    yield g("node_timex_pps_jitter_seconds", "Pulse per second jitter.", tx.jitter / divisor)
    yield g("node_timex_pps_shift_seconds", "Pulse per second interval duration.", tx.shift)
    yield g(
        "node_timex_pps_stability_hertz",
        "Pulse per second stability, average of recent frequency changes.",
        tx.stabil / PPM16,
    )
    yield c(
        "node_timex_pps_jitter_total",
        "Pulse per second count of jitter limit exceeded events.",
        value=tx.jitcnt,
    )
    yield c(
        "node_timex_pps_calibration_total",
        "Pulse per second count of calibration intervals.",
        value=tx.calcnt,
    )
    yield c("node_timex_pps_error_total", "Pulse per second count of calibration errors.", value=tx.errcnt)
    yield c(
        "node_timex_pps_stability_exceeded_total",
        "Pulse per second count of stability limit exceeded events.",
        value=tx.stbcnt,
    )
    yield g("node_timex_tai_offset_seconds", "International Atomic Time (TAI) offset.", tx.tai)


class TimeCollector:
    def __init__(self, sysfs_root: Path, clock: Callable[[], float] = time.time) -> None:
        self.clocksource = sysfs_root / "devices/system/clocksource"
        self.clock = clock

    def __call__(self) -> Iterator[Metric]:
        now = self.clock()
        yield gauge("node_time_seconds", "System time in seconds since epoch (1970).", now)
        local = time.localtime(now)
        zone = GaugeMetricFamily(
            "node_time_zone_offset_seconds", "System time zone offset in seconds.", labels=("time_zone",)
        )
        zone.add_metric((local.tm_zone,), local.tm_gmtoff)
        yield zone
        available = GaugeMetricFamily(
            "node_time_clocksource_available_info",
            "Available clocksources read from '/sys/devices/system/clocksource'.",
            labels=("device", "clocksource"),
        )
        current = GaugeMetricFamily(
            "node_time_clocksource_current_info",
            "Current clocksource read from '/sys/devices/system/clocksource'.",
            labels=("device", "clocksource"),
        )
        devices = sorted(self.clocksource.glob("clocksource[0-9]*"))
        for i, device in enumerate(devices):
            for name in read_text(device / "available_clocksource").split():
                available.add_metric((str(i), name), 1)
            current.add_metric((str(i), read_text(device / "current_clocksource").strip()), 1)
        yield from (available, current)


_PSI = (
    (
        "cpu",
        "some",
        "cpu_waiting_seconds_total",
        "Total time in seconds that processes have waited for CPU time",
    ),
    (
        "io",
        "some",
        "io_waiting_seconds_total",
        "Total time in seconds that processes have waited due to IO congestion",
    ),
    (
        "io",
        "full",
        "io_stalled_seconds_total",
        "Total time in seconds no process could make progress due to IO congestion",
    ),
    (
        "memory",
        "some",
        "memory_waiting_seconds_total",
        "Total time in seconds that processes have waited for memory",
    ),
    (
        "memory",
        "full",
        "memory_stalled_seconds_total",
        "Total time in seconds no process could make progress due to memory congestion",
    ),
)


def parse_psi(text: str) -> dict[str, float]:
    """{"some": total seconds, "full": ...} from /proc/pressure/<resource> (total= is microseconds)."""
    out = {}
    for line in text.splitlines():
        kind, *fields = line.split()
        for field in fields:
            if field.startswith("total="):
                out[kind] = int(field[6:]) / 1e6
    return out


def pressure(procfs_root: Path) -> Iterator[Metric]:
    totals: dict[str, dict[str, float]] = {}
    for resource in ("cpu", "io", "memory"):
        try:
            totals[resource] = parse_psi(read_text(procfs_root / "pressure" / resource))
        except FileNotFoundError as exc:
            raise NoData("no /proc/pressure (kernel without PSI)") from exc
        except OSError as exc:
            if exc.errno == 95:  # EOPNOTSUPP: PSI compiled in but disabled (psi=0)
                raise NoData("PSI disabled") from exc
            raise
    for resource, kind, name, doc in _PSI:
        yield CounterMetricFamily(f"node_pressure_{name}", doc, value=totals[resource][kind])


def entropy(procfs_root: Path) -> Iterator[Metric]:
    random = procfs_root / "sys/kernel/random"
    yield gauge(
        "node_entropy_available_bits",
        "Bits of available entropy.",
        float(read_text(random / "entropy_avail")),
    )
    yield gauge("node_entropy_pool_size_bits", "Bits of entropy pool.", float(read_text(random / "poolsize")))


_OS_LABELS = (
    ("build_id", "BUILD_ID"), ("id", "ID"), ("id_like", "ID_LIKE"), ("image_id", "IMAGE_ID"),
    ("image_version", "IMAGE_VERSION"), ("name", "NAME"), ("pretty_name", "PRETTY_NAME"),
    ("variant", "VARIANT"), ("variant_id", "VARIANT_ID"), ("version", "VERSION"),
    ("version_codename", "VERSION_CODENAME"), ("version_id", "VERSION_ID"),
)  # fmt: skip
_VERSION = re.compile(r"^[0-9]+\.?[0-9]*")


def parse_os_release(text: str) -> dict[str, str]:
    """os-release(5): KEY=value lines, values optionally quoted with shell escapes."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key.startswith("#"):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = re.sub(r"\\(.)", r"\1", value[1:-1]) if value[0] == '"' else value[1:-1]
        out[key] = value
    return out


class OSCollector:
    """node_os_info / node_os_version from rootfs's /etc/os-release (else /usr/lib/os-release),
    parsed again only when the file's mtime changes."""

    def __init__(self, rootfs: Path) -> None:
        self.paths = (rootfs / "etc/os-release", rootfs / "usr/lib/os-release")
        self._cached: tuple[Path, float, dict[str, str]] | None = None

    def _release(self) -> dict[str, str]:
        for path in self.paths:
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:
                continue
            if self._cached is None or self._cached[:2] != (path, mtime):
                self._cached = (path, mtime, parse_os_release(read_text(path)))
            return self._cached[2]
        raise NoData("no os-release file")

    def __call__(self) -> Iterator[Metric]:
        release = self._release()
        labels = tuple(release.get(key, "") for _, key in _OS_LABELS)
        info = GaugeMetricFamily(
            "node_os_info",
            "A metric with a constant '1' value labeled by build_id, id, id_like, image_id, image_version, "
            "name, pretty_name, variant, variant_id, version, version_codename, version_id.",
            labels=[name for name, _ in _OS_LABELS],
        )
        info.add_metric(labels, 1)
        match = _VERSION.match(release.get("VERSION_ID", ""))
        version = GaugeMetricFamily(
            "node_os_version",
            "Metric containing the major.minor part of the OS version.",
            labels=("id", "id_like", "name"),
        )
        version.add_metric(
            (release.get("ID", ""), release.get("ID_LIKE", ""), release.get("NAME", "")),
            float(match.group()) if match else 0.0,
        )
        yield from (info, version)


class SelinuxCollector:
    def __init__(self, sysfs_root: Path, rootfs: Path) -> None:
        self.enforce = sysfs_root / "fs/selinux/enforce"
        self.config = rootfs / "etc/selinux/config"

    def __call__(self) -> Iterator[Metric]:
        try:
            current = float(read_text(self.enforce))
        except FileNotFoundError:  # selinuxfs not mounted: SELinux is off
            yield gauge("node_selinux_enabled", "SELinux is enabled, 1 is true, 0 is false", 0)
            return
        configured = -1.0  # disabled, as libselinux reads a missing or unknown setting
        try:
            setting = parse_os_release(read_text(self.config)).get("SELINUX", "")
            configured = {"enforcing": 1.0, "permissive": 0.0}.get(setting, -1.0)
        except FileNotFoundError:
            pass
        yield gauge("node_selinux_enabled", "SELinux is enabled, 1 is true, 0 is false", 1)
        yield gauge("node_selinux_config_mode", "Configured SELinux enforcement mode", configured)
        yield gauge("node_selinux_current_mode", "Current SELinux enforcement mode", current)
