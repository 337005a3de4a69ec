"""The system collector on a fixture proc tree: node_exporter's names, labels, units and filters."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from atlas.settings import Settings
from exporters.collectors.base import NodeCollector
from exporters.collectors.disk import DiskstatsCollector
from exporters.collectors.kernel import TimeCollector
from exporters.system import Filters, SystemCollector, SystemPaths
from tests.helpers.procfs_tree import write_tree

DEFAULTS = Settings()
NODE_FILTERS = Filters(
    mount_points_exclude=DEFAULTS.exporter_mount_points_exclude,
    fs_types_exclude=DEFAULTS.exporter_fs_types_exclude,
    disk_devices_exclude=DEFAULTS.exporter_disk_devices_exclude,
    net_devices_exclude=DEFAULTS.exporter_net_devices_exclude,
)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def fake_statvfs(calls: list[str]) -> object:
    def statvfs(path: str) -> os.statvfs_result:
        calls.append(path)
        if path.endswith("/broken"):
            raise OSError(5, "Input/output error", path)
        # bsize, frsize, blocks, bfree, bavail, files, ffree, favail, flag, namemax
        return os.statvfs_result((4096, 4096, 1000, 400, 300, 500, 200, 200, 0, 255))

    return statvfs


def scrape(collector: Collector) -> Samples:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode()
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    return write_tree(tmp_path)


def collector(proc: Path, rootfs: Path = Path("/"), calls: list[str] | None = None) -> NodeCollector:
    """The system collector's parts plus diskstats and time, as the exporter runs them."""
    system = SystemCollector(
        SystemPaths(procfs=proc, sysfs=proc.parent / "sys", rootfs=rootfs),
        NODE_FILTERS,
        statvfs=fake_statvfs([] if calls is None else calls),  # type: ignore[arg-type]
    )
    return NodeCollector(
        {
            **system.parts(),
            "diskstats": DiskstatsCollector(proc, proc / "udev", NODE_FILTERS.disk_devices_exclude),
            "time": TimeCollector(proc.parent / "sys", clock=lambda: 1_800_000_000.5),
        }
    )


def test_cpu_load_memory_and_kernel_counters_in_node_exporter_units(proc: Path) -> None:
    got = scrape(collector(proc))
    # USER_HZ ticks become seconds; one series per cpu and mode, no aggregate "cpu" line.
    assert got[("node_cpu_seconds_total", (("cpu", "0"), ("mode", "user")))] == 2.0
    assert got[("node_cpu_seconds_total", (("cpu", "1"), ("mode", "steal")))] == 0.02
    assert len([k for k in got if k[0] == "node_cpu_seconds_total"]) == 16
    assert got[("node_load1", ())] == 0.5 and got[("node_load15", ())] == 1.25
    assert got[("node_memory_MemTotal_bytes", ())] == 8_000_000 * 1024
    assert got[("node_memory_MemAvailable_bytes", ())] == 4_000_000 * 1024
    assert got[("node_memory_Active_anon_bytes", ())] == 500_000 * 1024
    assert got[("node_memory_HugePages_Total", ())] == 0  # no kB unit: no _bytes suffix
    assert got[("node_boot_time_seconds", ())] == 1_700_000_000
    assert got[("node_procs_running", ())] == 3 and got[("node_procs_blocked", ())] == 1
    assert got[("node_context_switches_total", ())] == 987654
    assert got[("node_filefd_allocated", ())] == 2048
    assert got[("node_filefd_maximum", ())] == float(9223372036854775807)  # float64 on the wire
    assert got[("node_time_seconds", ())] == 1_800_000_000.5
    assert got[("node_vmstat_pgmajfault", ())] == 42
    assert ("node_vmstat_nr_free_pages", ()) not in got  # not in node_exporter's default fields
    uname = dict(next(k[1] for k in got if k[0] == "node_uname_info"))
    assert uname == {
        "domainname": "(none)",
        "machine": "x86_64",
        "nodename": "atlas-test",
        "release": "6.1.0-test",
        "sysname": "Linux",
        "version": "#1 SMP Test",
    }


def test_filesystems_are_filtered_like_node_exporter_and_read_only_is_reported(proc: Path) -> None:
    calls: list[str] = []
    got = scrape(collector(proc, calls=calls))
    sizes = {dict(k[1])["mountpoint"]: v for k, v in got.items() if k[0] == "node_filesystem_size_bytes"}
    # proc, sysfs, overlay, /run/credentials/... are pseudo or excluded; /run (tmpfs) is reported
    # (upstream node_exporter's default); / is listed twice but reported once.
    assert sorted(sizes) == ["/", "/run", "/srv/atlas data"]
    assert sizes["/"] == 1000 * 4096
    root = (("device", "/dev/sda1"), ("fstype", "ext4"), ("mountpoint", "/"))
    assert got[("node_filesystem_free_bytes", root)] == 400 * 4096
    assert got[("node_filesystem_avail_bytes", root)] == 300 * 4096
    assert got[("node_filesystem_files", root)] == 500
    assert got[("node_filesystem_files_free", root)] == 200
    assert got[("node_filesystem_readonly", root)] == 0
    data = (("device", "/dev/sda2"), ("fstype", "xfs"), ("mountpoint", "/srv/atlas data"))
    assert got[("node_filesystem_readonly", data)] == 1
    broken = (("device", "/dev/sdb1"), ("fstype", "ext4"), ("mountpoint", "/broken"))
    assert got[("node_filesystem_device_error", broken)] == 1
    assert ("node_filesystem_size_bytes", broken) not in got
    assert "/proc" not in calls and "/srv/atlas data" in calls


def test_rootfs_prefixes_statvfs_and_is_stripped_from_labels(proc: Path) -> None:
    (proc / "1/mounts").write_text(
        "/dev/sda1 /host ext4 rw 0 0\n/dev/sda2 /host/var/lib/atlas ext4 rw 0 0\n", encoding="ascii"
    )
    calls: list[str] = []
    got = scrape(collector(proc, rootfs=Path("/host"), calls=calls))
    mounts = sorted(dict(k[1])["mountpoint"] for k in got if k[0] == "node_filesystem_size_bytes")
    assert mounts == ["/", "/var/lib/atlas"]
    assert sorted(calls) == ["/host/", "/host/var/lib/atlas"]


def test_disks_skip_partitions_and_virtual_devices_and_convert_units(proc: Path) -> None:
    got = scrape(collector(proc))
    devices = sorted(dict(k[1])["device"] for k in got if k[0] == "node_disk_read_bytes_total")
    assert devices == ["nvme0n1", "sda"]
    sda = (("device", "sda"),)
    assert got[("node_disk_read_bytes_total", sda)] == 2000 * 512
    assert got[("node_disk_written_bytes_total", sda)] == 4000 * 512
    assert got[("node_disk_io_time_seconds_total", sda)] == 0.7
    assert got[("node_disk_io_time_weighted_seconds_total", sda)] == 0.9
    assert got[("node_disk_reads_completed_total", sda)] == 100


def test_network_counters_by_device(proc: Path) -> None:
    got = scrape(collector(proc))
    eth0 = (("device", "eth0"),)
    assert got[("node_network_receive_bytes_total", eth0)] == 555000
    assert got[("node_network_receive_packets_total", eth0)] == 700
    assert got[("node_network_receive_errs_total", eth0)] == 2
    assert got[("node_network_receive_drop_total", eth0)] == 3
    assert got[("node_network_transmit_bytes_total", eth0)] == 66000
    assert got[("node_network_transmit_packets_total", eth0)] == 400
    assert got[("node_network_transmit_errs_total", eth0)] == 4
    assert got[("node_network_transmit_drop_total", eth0)] == 5
    filtered = SystemCollector(SystemPaths(procfs=proc), Filters(net_devices_exclude="^lo$"))
    assert (("node_network_receive_bytes_total", (("device", "lo"),))) not in scrape(filtered)


def test_a_missing_source_drops_only_its_own_families(proc: Path) -> None:
    (proc / "diskstats").unlink()
    (proc / "meminfo").write_text("garbage without colons\n", encoding="ascii")
    (proc / "loadavg").write_text("not numbers\n", encoding="ascii")
    got = scrape(collector(proc))
    names = {k[0] for k in got}
    assert not any(n.startswith("node_disk_") for n in names)
    assert "node_load1" not in names
    assert "node_cpu_seconds_total" in names and "node_network_receive_bytes_total" in names


def test_reads_the_real_proc_too() -> None:
    got = scrape(SystemCollector(filters=NODE_FILTERS))
    names = {k[0] for k in got}
    assert {"node_cpu_seconds_total", "node_memory_MemTotal_bytes", "node_load1", "node_uname_info"} <= names
    assert got[("node_memory_MemTotal_bytes", ())] > 0
