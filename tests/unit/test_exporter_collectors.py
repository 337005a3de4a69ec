"""node_exporter's collectors beyond the core set, on fixture files: the textfile collector's
validation, the network and kernel collectors' names and units, scrape success per collector, and
collectors turned off one by one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from atlas.errors import ConfigError
from atlas.settings import Settings
from exporters import build_registry
from exporters.collectors import kernel, net
from exporters.collectors.base import NodeCollector, Part
from exporters.collectors.netclass import NetclassCollector
from exporters.collectors.textfile import TextfileCollector

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class _Bare(Collector):
    def __init__(self, part: Part) -> None:
        self.part = part

    def collect(self) -> Iterator[Metric]:
        yield from self.part()


def scrape(collector: Collector | Part) -> tuple[Samples, dict[str, str]]:
    """(samples, family name -> type) as a Prometheus scrape sees them; a bare part is scraped
    without the node_scrape_collector_* families NodeCollector adds."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector if hasattr(collector, "collect") else _Bare(collector))  # type: ignore[arg-type]
    samples: Samples = {}
    types = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        types[fam.name] = fam.type
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, types


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


# -- textfile --------------------------------------------------------------------------------------


def test_textfile_exports_valid_files_and_flags_invalid_ones_like_node_exporter(tmp_path: Path) -> None:
    d = write(
        tmp_path / "tf",
        {
            "good.prom": "# HELP job_ok Whether the job succeeded.\n# TYPE job_ok gauge\n"
            'job_ok{job="backup"} 1\njob_ok{job="rsync",host="a"} 0\n'
            "# TYPE runs_total counter\nruns_total 7\n",
            "timestamps.prom": "stamped 1 1700000000000\n",
            "syntax.prom": 'broken{label="x" 1\n',
            "not-a-prom.txt": "ignored 1\n",
        },
    )
    os.utime(d / "good.prom", (1_700_000_000.7, 1_700_000_000.7))
    got, types = scrape(NodeCollector({"textfile": TextfileCollector(d)}))
    # A label one series lacks is filled with "" (node_exporter's convertMetricFamily).
    assert got[("job_ok", (("host", ""), ("job", "backup")))] == 1
    assert got[("job_ok", (("host", "a"), ("job", "rsync")))] == 0
    assert got[("runs_total", ())] == 7 and types["runs"] == "counter"
    assert ("stamped", ()) not in got and not any(k[0] == "broken" for k in got)
    assert got[("node_textfile_mtime_seconds", (("file", str(d / "good.prom")),))] == 1_700_000_000
    assert len([k for k in got if k[0] == "node_textfile_mtime_seconds"]) == 1
    assert got[("node_textfile_scrape_error", ())] == 1
    assert got[("node_scrape_collector_success", (("collector", "textfile"),))] == 1


def test_textfile_conflicts_across_files_skip_the_later_file(tmp_path: Path) -> None:
    d = write(
        tmp_path / "tf",
        {
            "a.prom": '# TYPE shared gauge\nshared{f="a"} 1\n',
            "b.prom": "# TYPE shared counter\nshared 2\n",
            "c.prom": 'shared_untyped 3\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\n'
            "h_sum 3\nh_count 2\n",
        },
    )
    got, types = scrape(TextfileCollector(d))
    assert got[("shared", (("f", "a"),))] == 1 and ("shared", (("f", ""),)) not in got
    assert types["h"] == "histogram" and got[("h_count", ())] == 2
    assert got[("h_bucket", (("le", "+Inf"),))] == 2
    assert got[("node_textfile_scrape_error", ())] == 1


def test_textfile_without_a_directory_or_with_a_missing_one(tmp_path: Path) -> None:
    got, _ = scrape(TextfileCollector(None))
    assert got == {("node_textfile_scrape_error", ()): 0}
    got, _ = scrape(TextfileCollector(tmp_path / "absent"))
    assert got[("node_textfile_scrape_error", ())] == 1


def test_textfile_help_defaults_to_the_files_it_came_from(tmp_path: Path) -> None:
    d = write(tmp_path / "tf", {"x.prom": "plain 5\n"})
    registry = CollectorRegistry()
    registry.register(NodeCollector({"textfile": TextfileCollector(d)}))
    assert f"# HELP plain Metric read from {d / 'x.prom'}" in generate_latest(registry).decode()


# -- /proc/net -------------------------------------------------------------------------------------

NETSTAT = (
    "TcpExt: SyncookiesSent ListenDrops DelayedACKs\nTcpExt: 1 2 3\n"
    "IpExt: InOctets OutOctets InBcastPkts\nIpExt: 100 200 5\n"
)
SNMP = (
    "Ip: Forwarding DefaultTTL InReceives\nIp: 1 64 10\n"
    "Tcp: ActiveOpens CurrEstab InErrs OutSegs\nTcp: 4 5 6 7\n"
    "Udp: InDatagrams NoPorts InErrors\nUdp: 8 9 10\n"
)
SNMP6 = "Ip6InReceives                   \t11\nIp6InOctets 12\nUdp6InDatagrams 13\nIcmp6InMsgs 14\n"


def test_netstat_default_field_filter_and_untyped_families(tmp_path: Path) -> None:
    proc = write(tmp_path, {"net/netstat": NETSTAT, "net/snmp": SNMP, "net/snmp6": SNMP6})
    got, types = scrape(NodeCollector({"netstat": net.NetstatCollector(proc)}))
    names = {k[0] for k in got if k[0].startswith("node_netstat_")}
    assert names == {
        "node_netstat_TcpExt_SyncookiesSent",
        "node_netstat_TcpExt_ListenDrops",
        "node_netstat_IpExt_InOctets",
        "node_netstat_IpExt_OutOctets",
        "node_netstat_Ip_Forwarding",
        "node_netstat_Tcp_ActiveOpens",
        "node_netstat_Tcp_CurrEstab",
        "node_netstat_Tcp_InErrs",
        "node_netstat_Tcp_OutSegs",
        "node_netstat_Udp_InDatagrams",
        "node_netstat_Udp_NoPorts",
        "node_netstat_Udp_InErrors",
        "node_netstat_Ip6_InOctets",
        "node_netstat_Udp6_InDatagrams",
        "node_netstat_Icmp6_InMsgs",
    }
    assert got[("node_netstat_Tcp_CurrEstab", ())] == 5 and types["node_netstat_Tcp_CurrEstab"] == "unknown"
    (proc / "net/snmp").write_text("Tcp: A B\nTcp: 1\n")
    got, _ = scrape(NodeCollector({"netstat": net.NetstatCollector(proc)}))
    assert got[("node_scrape_collector_success", (("collector", "netstat"),))] == 0


def test_sockstat_softnet_arp_conntrack_udp(tmp_path: Path) -> None:
    proc = write(
        tmp_path,
        {
            "net/sockstat": "sockets: used 27\nTCP: inuse 8 orphan 0 tw 46 alloc 9 mem 3\n"
            "UDP: inuse 1 mem 2\nFRAG: inuse 0 memory 0\n",
            "net/sockstat6": "TCP6: inuse 4\nUDP6: inuse 5\n",
            "net/softnet_stat": "0000000a 00000001 00000002 0 0\n000000ff 00000000 00000003 0 0\n",
            "net/arp": "IP address HW type Flags HW address Mask Device\n"
            "10.0.0.1 0x1 0x2 aa:bb:cc:dd:ee:ff * eth0\n10.0.0.2 0x1 0x2 aa:bb:cc:dd:ee:00 * eth0\n"
            "10.1.0.1 0x1 0x2 aa:bb:cc:dd:ee:01 * eth1\n",
            "sys/net/netfilter/nf_conntrack_count": "12\n",
            "sys/net/netfilter/nf_conntrack_max": "262144\n",
            "net/stat/nf_conntrack": "entries found invalid ignore insert insert_failed drop early_drop "
            "search_restart\n0000000c 00000001 0000000a 0 0 0 00000002 0 00000010\n"
            "0000000c 00000002 00000000 0 0 0 00000001 0 00000001\n",
            "net/udp": "  sl  local_address rem_address   st tx_queue rx_queue tr\n"
            "   0: 0100007F:0035 00000000:0000 07 00000010:00000020 00:00000000\n"
            "   1: 0100007F:0036 00000000:0000 07 00000001:00000000 00:00000000\n",
        },
    )
    got, types = scrape(
        NodeCollector(
            {
                "sockstat": lambda: net.sockstat(proc),
                "softnet": lambda: net.softnet(proc),
                "arp": net.ArpCollector(proc, devices_exclude="^eth1$"),
                "conntrack": lambda: net.conntrack(proc),
                "udp_queues": lambda: net.udp_queues(proc),
            }
        )
    )
    assert got[("node_sockstat_sockets_used", ())] == 27
    assert got[("node_sockstat_TCP_mem_bytes", ())] == 3 * net.PAGE_BYTES
    assert got[("node_sockstat_TCP6_inuse", ())] == 4 and got[("node_sockstat_FRAG_memory", ())] == 0
    assert got[("node_softnet_processed_total", (("cpu", "1"),))] == 255
    assert types["node_softnet_times_squeezed"] == "counter"
    assert got[("node_arp_entries", (("device", "eth0"),))] == 2
    assert ("node_arp_entries", (("device", "eth1"),)) not in got
    assert got[("node_nf_conntrack_entries_limit", ())] == 262144
    assert got[("node_nf_conntrack_stat_found", ())] == 3 and got[("node_nf_conntrack_stat_drop", ())] == 3
    assert got[("node_nf_conntrack_stat_search_restart", ())] == 17
    assert got[("node_udp_queues", (("ip", "v4"), ("queue", "tx")))] == 17
    assert got[("node_udp_queues", (("ip", "v4"), ("queue", "rx")))] == 32
    assert ("node_udp_queues", (("ip", "v6"), ("queue", "rx"))) not in got  # no udp6 file
    # No conntrack module: node_exporter's "no data", success 0 and nothing else.
    (proc / "sys/net/netfilter/nf_conntrack_count").unlink()
    got, _ = scrape(NodeCollector({"conntrack": lambda: net.conntrack(proc)}))
    assert got == {
        ("node_scrape_collector_success", (("collector", "conntrack"),)): 0,
        ("node_scrape_collector_duration_seconds", (("collector", "conntrack"),)): got[
            ("node_scrape_collector_duration_seconds", (("collector", "conntrack"),))
        ],
    }


def test_netclass_reads_sysfs_attributes_and_skips_what_the_kernel_refuses(tmp_path: Path) -> None:
    base = "class/net"
    sysfs = write(
        tmp_path,
        {
            f"{base}/eth0/operstate": "up\n",
            f"{base}/eth0/address": "02:00:00:00:00:01\n",
            f"{base}/eth0/broadcast": "ff:ff:ff:ff:ff:ff\n",
            f"{base}/eth0/duplex": "full\n",
            f"{base}/eth0/ifalias": "\n",
            f"{base}/eth0/flags": "0x1003\n",
            f"{base}/eth0/mtu": "1500\n",
            f"{base}/eth0/speed": "1000\n",
            f"{base}/eth0/carrier": "1\n",
            f"{base}/eth0/carrier_changes": "3\n",
            f"{base}/dummy0/operstate": "down\n",
            f"{base}/dummy0/speed": "-1\n",
            f"{base}/bonding_masters": "\n",
        },
    )
    got, types = scrape(NetclassCollector(sysfs))
    eth0 = (("device", "eth0"),)
    assert got[("node_network_up", eth0)] == 1 and got[("node_network_up", (("device", "dummy0"),))] == 0
    assert got[("node_network_flags", eth0)] == 4099
    assert got[("node_network_speed_bytes", eth0)] == 125_000_000
    assert got[("node_network_speed_bytes", (("device", "dummy0"),))] == -125000
    assert got[("node_network_mtu_bytes", eth0)] == 1500
    assert types["node_network_carrier_changes"] == "counter"
    assert ("node_network_carrier", (("device", "dummy0"),)) not in got
    info = [dict(k[1]) for k in got if k[0] == "node_network_info" and dict(k[1])["device"] == "eth0"]
    assert info == [
        {
            "device": "eth0",
            "address": "02:00:00:00:00:01",
            "broadcast": "ff:ff:ff:ff:ff:ff",
            "duplex": "full",
            "operstate": "up",
            "ifalias": "",
        }
    ]
    assert not any(dict(k[1]).get("device") == "bonding_masters" for k in got)
    got, _ = scrape(NetclassCollector(sysfs, ignore_invalid_speed=True, devices_exclude="^eth"))
    assert not any(k[0] == "node_network_speed_bytes" for k in got)
    assert ("node_network_up", eth0) not in got


# -- clock and kernel state ------------------------------------------------------------------------


def test_timex_units_and_sync_status() -> None:
    def unsynced() -> tuple[int, kernel._Timex]:
        tx = kernel._Timex()
        tx.status, tx.offset, tx.maxerror, tx.esterror = 0x2000 | 0x40, 1_500_000, 16_000_000, 250
        tx.freq, tx.tick = 65536 * 10, 10_000
        return kernel.TIME_ERROR, tx

    got, _ = scrape(NodeCollector({"timex": lambda: kernel.timex(unsynced)}))
    assert got[("node_timex_sync_status", ())] == 0
    assert got[("node_timex_offset_seconds", ())] == 0.0015  # STA_NANO: nanoseconds
    assert got[("node_timex_maxerror_seconds", ())] == 16
    assert got[("node_timex_frequency_adjustment_ratio", ())] == 1.00001
    assert got[("node_timex_tick_seconds", ())] == 0.01
    real, _ = scrape(NodeCollector({"timex": kernel.timex}))  # the real adjtimex, read-only
    assert real[("node_scrape_collector_success", (("collector", "timex"),))] == 1
    assert real[("node_timex_sync_status", ())] in (0, 1)


def test_pressure_entropy_os_time_and_selinux(tmp_path: Path) -> None:
    proc = write(
        tmp_path / "proc",
        {
            "pressure/cpu": "some avg10=0.00 avg60=0.00 avg300=0.00 total=2500000\n",
            "pressure/io": "some avg10=0 avg60=0 avg300=0 total=1000000\n"
            "full avg10=0 avg60=0 avg300=0 total=500\n",
            "pressure/memory": "some avg10=0 avg60=0 avg300=0 total=0\n"
            "full avg10=0 avg60=0 avg300=0 total=0\n",
            "sys/kernel/random/entropy_avail": "256\n",
            "sys/kernel/random/poolsize": "256\n",
        },
    )
    rootfs = write(
        tmp_path / "root",
        {
            "usr/lib/os-release": 'NAME="Debian GNU/Linux"\nID=debian\nVERSION_ID="12.5"\n'
            'PRETTY_NAME="D \\"12\\""\n'
        },
    )
    sysfs = write(
        tmp_path / "sys",
        {
            "devices/system/clocksource/clocksource0/available_clocksource": "tsc kvm-clock\n",
            "devices/system/clocksource/clocksource0/current_clocksource": "tsc\n",
        },
    )
    got, types = scrape(
        NodeCollector(
            {
                "pressure": lambda: kernel.pressure(proc),
                "entropy": lambda: kernel.entropy(proc),
                "os": kernel.OSCollector(rootfs),
                "time": kernel.TimeCollector(sysfs, clock=lambda: 1_800_000_000.0),
                "selinux": kernel.SelinuxCollector(sysfs, rootfs),
            }
        )
    )
    assert got[("node_pressure_cpu_waiting_seconds_total", ())] == 2.5
    assert got[("node_pressure_io_stalled_seconds_total", ())] == 0.0005
    assert types["node_pressure_memory_stalled_seconds"] == "counter"
    assert got[("node_entropy_available_bits", ())] == 256
    os_info = next(dict(k[1]) for k in got if k[0] == "node_os_info")
    assert os_info["pretty_name"] == 'D "12"' and os_info["id"] == "debian" and os_info["variant"] == ""
    assert got[("node_os_version", (("id", "debian"), ("id_like", ""), ("name", "Debian GNU/Linux")))] == 12.5
    assert got[("node_time_seconds", ())] == 1_800_000_000.0
    assert got[("node_time_clocksource_current_info", (("clocksource", "tsc"), ("device", "0")))] == 1
    assert ("node_time_clocksource_available_info", (("clocksource", "kvm-clock"), ("device", "0"))) in got
    assert any(k[0] == "node_time_zone_offset_seconds" for k in got)
    assert got[("node_selinux_enabled", ())] == 0
    (proc / "pressure/cpu").unlink()  # a kernel without PSI
    got, _ = scrape(NodeCollector({"pressure": lambda: kernel.pressure(proc)}))
    assert got[("node_scrape_collector_success", (("collector", "pressure"),))] == 0
    assert not any(k[0].startswith("node_pressure_") for k in got)


# -- the exporter's registry -----------------------------------------------------------------------


def test_collectors_turn_off_one_by_one_and_unknown_names_are_config_errors(tmp_path: Path) -> None:
    every = generate_latest(build_registry(Settings(data_dir=tmp_path), commit="abc")).decode()
    for name in ("arp", "netstat", "textfile", "timex"):
        assert f'node_scrape_collector_success{{collector="{name}"}}' in every
    assert "node_netstat_" in every and "node_timex_sync_status" in every
    assert "process_resident_memory_bytes" in every and "process_virtual_memory_max_bytes" in every
    assert "node_exporter_build_info{" in every and "atlas_items" not in every  # no store: no items
    off = Settings(data_dir=tmp_path, exporter_collectors_disabled=("netstat", "timex", "business"))
    text = generate_latest(build_registry(off, commit="abc")).decode()
    assert "node_netstat_" not in text and "node_timex_" not in text
    assert 'collector="netstat"' not in text and "atlas_exporter_store_up" not in text
    assert "node_cpu_seconds_total" in text
    with pytest.raises(ConfigError, match="ATLAS_EXPORTER_COLLECTORS_DISABLED: unknown collector wifi"):
        build_registry(Settings(data_dir=tmp_path, exporter_collectors_disabled=("wifi",)), commit="abc")
