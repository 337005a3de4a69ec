"""node_exporter's netclass collector: the attributes of /sys/class/net/<iface> (up, info, carrier,
mtu_bytes, speed_bytes, flags, ...). An attribute the kernel refuses to show for a device (carrier
of a device that is down, speed of a virtual one) is left out for that device, as node_exporter does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters.collectors.base import read_text

# (metric name, sysfs file, type), in node_exporter 1.5's order.
_ATTRIBUTES = (
    ("address_assign_type", "addr_assign_type", "gauge"),
    ("carrier", "carrier", "gauge"),
    ("carrier_changes_total", "carrier_changes", "counter"),
    ("carrier_up_changes_total", "carrier_up_count", "counter"),
    ("carrier_down_changes_total", "carrier_down_count", "counter"),
    ("device_id", "dev_id", "gauge"),
    ("dormant", "dormant", "gauge"),
    ("flags", "flags", "gauge"),
    ("iface_id", "ifindex", "gauge"),
    ("iface_link", "iflink", "gauge"),
    ("iface_link_mode", "link_mode", "gauge"),
    ("mtu_bytes", "mtu", "gauge"),
    ("name_assign_type", "name_assign_type", "gauge"),
    ("net_dev_group", "netdev_group", "gauge"),
    ("speed_bytes", "speed", "gauge"),
    ("transmit_queue_length", "tx_queue_len", "gauge"),
    ("protocol_type", "type", "gauge"),
)
_INFO_FILES = ("address", "broadcast", "duplex", "operstate", "ifalias")


def _attr(device_dir: str, name: str, key: str) -> str | None:
    try:
        return read_text(f"{device_dir}/{name}", f"{key}/{name}").strip()
    except OSError:  # EINVAL for carrier/speed/duplex of a device that is down, ENOENT, ...
        return None


def _number(raw: str) -> int:
    return int(raw, 16) if raw.startswith("0x") else int(raw)


class NetclassCollector:
    def __init__(
        self, sysfs_root: Path, devices_exclude: str = "", ignore_invalid_speed: bool = False
    ) -> None:
        self.net = sysfs_root / "class/net"
        # node_exporter's --collector.netclass.ignored-devices defaults to "^$" (nothing ignored).
        self.exclude = re.compile(devices_exclude) if devices_exclude else None
        self.ignore_invalid_speed = ignore_invalid_speed
        # Which entries of class/net are device directories, by name and the entry's inode (a
        # device's symlink is made anew when a device is created or renamed): not stat'ed again.
        self._is_dir: dict[str, bool] = {}

    def __call__(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "node_network_up", "Value is 1 if operstate is 'up', 0 otherwise.", labels=("device",)
        )
        info = GaugeMetricFamily(
            "node_network_info",
            "Non-numeric data from /sys/class/net/<iface>, value is always 1.",
            labels=("device", "address", "broadcast", "duplex", "operstate", "ifalias"),
        )
        fams: list[tuple[GaugeMetricFamily | CounterMetricFamily, str]] = [
            (
                (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                    f"node_network_{name}", f"Network device property: {name}", labels=("device",)
                ),
                filename,
            )
            for name, filename, kind in _ATTRIBUTES
        ]
        is_dir: dict[str, bool] = {}
        with os.scandir(self.net) as entries:
            listed = sorted((entry.name, entry.inode(), entry.path) for entry in entries)
        for device, inode, device_dir in listed:
            # The kept fds of this device's attributes are named by its entry's inode as well as
            # its name, so a new device under an old name is never read through the old one's fds.
            key = f"netclass:{device}:{inode}"
            is_dir[key] = self._is_dir[key] if key in self._is_dir else os.path.isdir(device_dir)
            if not is_dir[key]:  # bonding_masters and other plain files
                continue
            if self.exclude and self.exclude.search(device):
                continue
            text = {name: _attr(device_dir, name, key) for name in _INFO_FILES}
            up.add_metric((device,), 1 if text["operstate"] == "up" else 0)
            info.add_metric((device, *(text[name] or "" for name in _INFO_FILES)), 1)
            for fam, filename in fams:
                raw = _attr(device_dir, filename, key)
                if not raw:
                    continue
                try:
                    value = _number(raw)
                except ValueError:
                    continue
                if filename == "speed":  # Mbit/s -> bytes/s; -1 = unknown
                    if value < 0 and self.ignore_invalid_speed:
                        continue
                    value = value * 1000 * 1000 // 8
                fam.add_metric((device,), value)
        self._is_dir = is_dir
        yield from (up, info)
        yield from (fam for fam, _ in fams)
