"""node_exporter's kernel network collectors that read /proc/net: netstat, sockstat (v4 and v6),
softnet, arp, conntrack and udp_queues. Names, types, help texts and units are node_exporter 1.5's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, UnknownMetricFamily

from exporters.collectors.base import NoData, gauge, read_text

# node_exporter's default --collector.netstat.fields (upstream and Debian agree).
NETSTAT_FIELDS = (
    r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)"
    r"|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)"
    r"|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)"
    r"|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$"
)
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def parse_netstat(text: str, source: str) -> dict[str, str]:
    """/proc/net/netstat and /proc/net/snmp: pairs of `Proto: names` / `Proto: values` lines ->
    {"Proto_Name": value}. Raises ValueError naming `source` on a pair whose lengths differ."""
    out: dict[str, str] = {}
    lines = text.splitlines()
    for names_line, values_line in zip(lines[::2], lines[1::2], strict=False):
        names, values = names_line.split(), values_line.split()
        if len(names) != len(values):
            raise ValueError(f"{source}: field count mismatch for {names[0] if names else '?'}")
        protocol = names[0].rstrip(":")
        for name, value in zip(names[1:], values[1:], strict=True):
            out[f"{protocol}_{name}"] = value
    return out


def parse_snmp6(text: str) -> dict[str, str]:
    """/proc/net/snmp6: `Ip6InReceives 12` lines -> {"Ip6_InReceives": "12"} (split after the 6)."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        six = parts[0].find("6")
        if six != -1:
            out[f"{parts[0][: six + 1]}_{parts[0][six + 1 :]}"] = parts[1]
    return out


class NetstatCollector:
    def __init__(self, procfs_root: Path, fields: str = NETSTAT_FIELDS) -> None:
        self.procfs_root = procfs_root
        self.fields = re.compile(fields)

    def __call__(self) -> Iterator[Metric]:
        net = self.procfs_root / "net"
        stats = parse_netstat(read_text(net / "netstat"), "net/netstat")
        stats.update(parse_netstat(read_text(net / "snmp"), "net/snmp"))
        try:
            stats.update(parse_snmp6(read_text(net / "snmp6")))
        except FileNotFoundError:
            pass  # IPv6 disabled: node_exporter carries on without it
        for key, raw in stats.items():
            if self.fields.match(key):
                value = float(raw)
                # node_exporter exports these untyped; the help is "Statistic <Proto><Name>."
                yield UnknownMetricFamily(
                    f"node_netstat_{key}", f"Statistic {key.replace('_', '', 1)}.", value=value
                )


def parse_sockstat(text: str) -> list[tuple[str, str, float]]:
    """[(protocol, field, value)] from /proc/net/sockstat{,6}; `sockets: used N` as ("sockets", "used")."""
    out = []
    for line in text.splitlines():
        protocol, _, rest = line.partition(":")
        parts = rest.split()
        for name, value in zip(parts[::2], parts[1::2], strict=False):
            out.append((protocol.strip(), name, float(value)))
    return out


def sockstat(procfs_root: Path) -> Iterator[Metric]:
    rows: list[tuple[str, str, float]] = []
    for name in ("sockstat", "sockstat6"):
        try:
            rows += parse_sockstat(read_text(procfs_root / "net" / name))
        except FileNotFoundError:
            continue  # either may be missing (no IPv6); node_exporter skips it
    for protocol, field, value in rows:
        if protocol == "sockets":
            if field == "used":
                yield gauge("node_sockstat_sockets_used", "Number of IPv4 sockets in use.", value)
            continue
        yield gauge(
            f"node_sockstat_{protocol}_{field}", f"Number of {protocol} sockets in state {field}.", value
        )
        if field == "mem":  # counted in pages
            yield gauge(
                f"node_sockstat_{protocol}_mem_bytes",
                f"Number of {protocol} sockets in state mem_bytes.",
                value * PAGE_BYTES,
            )


def softnet(procfs_root: Path) -> Iterator[Metric]:
    processed = CounterMetricFamily(
        "node_softnet_processed_total", "Number of processed packets", labels=("cpu",)
    )
    dropped = CounterMetricFamily("node_softnet_dropped_total", "Number of dropped packets", labels=("cpu",))
    squeezed = CounterMetricFamily(
        "node_softnet_times_squeezed_total",
        "Number of times processing packets ran out of quota",
        labels=("cpu",),
    )
    # One line per online CPU, hex columns; node_exporter 1.5 labels them by line number.
    for cpu, line in enumerate(read_text(procfs_root / "net/softnet_stat").splitlines()):
        cols = line.split()
        if len(cols) < 3:
            raise ValueError(f"net/softnet_stat line {cpu + 1}: {len(cols)} columns")
        label = (str(cpu),)
        processed.add_metric(label, int(cols[0], 16))
        dropped.add_metric(label, int(cols[1], 16))
        squeezed.add_metric(label, int(cols[2], 16))
    yield from (processed, dropped, squeezed)


class ArpCollector:
    def __init__(self, procfs_root: Path, devices_exclude: str = "") -> None:
        self.procfs_root = procfs_root
        self.exclude = re.compile(devices_exclude) if devices_exclude else None

    def __call__(self) -> Iterator[Metric]:
        counts: dict[str, int] = {}
        for n, line in enumerate(read_text(self.procfs_root / "net/arp").splitlines()):
            cols = line.split()
            if len(cols) < 6:
                raise ValueError(f"net/arp line {n + 1}: unexpected ARP table format")
            if cols[0] != "IP":  # the header
                counts[cols[-1]] = counts.get(cols[-1], 0) + 1
        fam = GaugeMetricFamily("node_arp_entries", "ARP entries by device", labels=("device",))
        for device, count in counts.items():
            if not (self.exclude and self.exclude.search(device)):
                fam.add_metric((device,), count)
        yield fam


_CONNTRACK_STATS = {
    "found": "Number of searched entries which were successful.",
    "invalid": "Number of packets seen which can not be tracked.",
    "ignore": "Number of packets seen which are already connected to a conntrack entry.",
    "insert": "Number of entries inserted into the list.",
    "insert_failed": "Number of entries for which list insertion was attempted but failed.",
    "drop": "Number of packets dropped due to conntrack failure.",
    "early_drop": "Number of dropped conntrack entries to make room for new ones,"
    " if maximum table size was reached.",
    "search_restart": "Number of conntrack table lookups which had to be restarted due to hashtable resizes.",
}


def conntrack(procfs_root: Path) -> Iterator[Metric]:
    netfilter = procfs_root / "sys/net/netfilter"
    try:
        count = float(read_text(netfilter / "nf_conntrack_count"))
        limit = float(read_text(netfilter / "nf_conntrack_max"))
        lines = read_text(procfs_root / "net/stat/nf_conntrack").splitlines()
    except FileNotFoundError as exc:
        raise NoData(f"conntrack not loaded: {exc}") from exc
    yield gauge(
        "node_nf_conntrack_entries",
        "Number of currently allocated flow entries for connection tracking.",
        count,
    )
    yield gauge("node_nf_conntrack_entries_limit", "Maximum size of connection tracking table.", limit)
    header = lines[0].split()
    totals = dict.fromkeys(header, 0)
    for line in lines[1:]:  # one line per CPU, hex; node_exporter sums them
        for name, raw in zip(header, line.split(), strict=False):
            totals[name] += int(raw, 16)
    for name, doc in _CONNTRACK_STATS.items():
        # Gauges in node_exporter 1.5 although they only grow; kept so rules see the same type.
        yield gauge(f"node_nf_conntrack_stat_{name}", doc, totals[name])


def _udp_queues(text: str) -> tuple[int, int]:
    tx = rx = 0
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) > 4:
            t, _, r = cols[4].partition(":")
            tx += int(t, 16)
            rx += int(r, 16)
    return tx, rx


def udp_queues(procfs_root: Path) -> Iterator[Metric]:
    fam = GaugeMetricFamily(
        "node_udp_queues",
        "Number of allocated memory in the kernel for UDP datagrams in bytes.",
        labels=("queue", "ip"),
    )
    for ip, name in (("v4", "udp"), ("v6", "udp6")):
        try:
            tx, rx = _udp_queues(read_text(procfs_root / "net" / name))
        except FileNotFoundError:
            continue
        fam.add_metric(("tx", ip), tx)
        fam.add_metric(("rx", ip), rx)
    yield fam
