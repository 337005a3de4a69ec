"""node_exporter's diskstats collector: every /proc/diskstats column the kernel prints (reads,
writes, merges, discards, flushes), node_disk_info, and the udev-derived filesystem and device
mapper info series when udev's database is readable (like node_exporter, without it the info
labels are empty strings and the udev-only families are absent)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters import procfs
from exporters.collectors.base import read_text

_HELP = {
    "reads_completed_total": "The total number of reads completed successfully.",
    "reads_merged_total": "The total number of reads merged.",
    "read_bytes_total": "The total number of bytes read successfully.",
    "read_time_seconds_total": "The total number of seconds spent by all reads.",
    "writes_completed_total": "The total number of writes completed successfully.",
    "writes_merged_total": "The number of writes merged.",
    "written_bytes_total": "The total number of bytes written successfully.",
    "write_time_seconds_total": "This is the total number of seconds spent by all writes.",
    "io_now": "The number of I/Os currently in progress.",
    "io_time_seconds_total": "Total seconds spent doing I/Os.",
    "io_time_weighted_seconds_total": "The weighted # of seconds spent doing I/Os.",
    "discards_completed_total": "The total number of discards completed successfully.",
    "discards_merged_total": "The total number of discards merged.",
    "discarded_sectors_total": "The total number of sectors discarded successfully.",
    "discard_time_seconds_total": "This is the total number of seconds spent by all discards.",
    "flush_requests_total": "The total number of flush requests completed successfully",
    "flush_requests_time_seconds_total": "This is the total number of seconds spent by all flush requests.",
}


def read_udev(udev_data: Path, major: str, minor: str) -> dict[str, str]:
    """udev's properties of block device major:minor (`E:KEY=VALUE` lines); {} when unreadable."""
    try:
        text = read_text(udev_data / f"b{major}:{minor}")
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith("E:"):
            key, sep, value = line[2:].partition("=")
            if sep:
                out[key] = value
    return out


class DiskstatsCollector:
    def __init__(self, procfs_root: Path, udev_data: Path, devices_exclude: str) -> None:
        self.procfs_root = procfs_root
        self.udev_data = udev_data
        self.exclude = re.compile(devices_exclude) if devices_exclude else None

    def __call__(self) -> Iterator[Metric]:
        families: list[GaugeMetricFamily | CounterMetricFamily] = [
            (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                f"node_disk_{name}", _HELP[name], labels=("device",)
            )
            for name, _, kind in procfs.DISKSTATS_COLUMNS
        ]
        info = GaugeMetricFamily(
            "node_disk_info",
            "Info of /sys/block/<block_device>.",
            labels=("device", "major", "minor", "path", "wwn", "model", "serial", "revision"),
        )
        fs_info = GaugeMetricFamily(
            "node_disk_filesystem_info",
            "Info about disk filesystem.",
            labels=("device", "type", "usage", "uuid", "version"),
        )
        dm_info = GaugeMetricFamily(
            "node_disk_device_mapper_info",
            "Info about disk device mapper.",
            labels=("device", "name", "uuid", "vg_name", "lv_name", "lv_layer"),
        )
        for d in procfs.parse_diskstats(read_text(self.procfs_root / "diskstats")):
            if self.exclude and self.exclude.search(d.device):
                continue
            udev = read_udev(self.udev_data, d.major, d.minor)
            u = udev.get
            info.add_metric(
                (
                    d.device,
                    d.major,
                    d.minor,
                    u("ID_PATH", ""),
                    u("ID_WWN", ""),
                    u("ID_MODEL", ""),
                    u("ID_SERIAL_SHORT", ""),
                    u("ID_REVISION", ""),
                ),
                1,
            )
            for fam, value in zip(families, d.values, strict=False):
                fam.add_metric((d.device,), value)
            if u("ID_FS_TYPE"):
                fs_info.add_metric(
                    (
                        d.device,
                        u("ID_FS_TYPE", ""),
                        u("ID_FS_USAGE", ""),
                        u("ID_FS_UUID", ""),
                        u("ID_FS_VERSION", ""),
                    ),
                    1,
                )
            if u("DM_NAME"):
                dm_info.add_metric(
                    (
                        d.device,
                        u("DM_NAME", ""),
                        u("DM_UUID", ""),
                        u("DM_VG_NAME", ""),
                        u("DM_LV_NAME", ""),
                        u("DM_LV_LAYER", ""),
                    ),
                    1,
                )
        yield info
        # A family the kernel prints no column for (old kernels: discards, flushes) is left out.
        yield from (f for f in families if f.samples)
        yield from (f for f in (fs_info, dm_info) if f.samples)
