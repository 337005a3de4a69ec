"""Parity with node_exporter: Debian's prometheus-node-exporter (its default collectors) and
`atlas exporter` run side by side on this machine, both scraped at the same moment.

Fails on any family node_exporter exposes (but go_* and promhttp_*, the Go runtime's and the Go
HTTP handler's own) that Atlas lacks or exposes with another type or other label names; on any
series of a shared family that Atlas lacks; and on counters that differ by more than 2%.
Prints the family counts and every gap (run with -s to see them when it passes).

Both exporters get the same textfile directory, and Atlas gets Debian's netdev and mount point
filters (its own defaults are upstream's), so that they select the same series.
"""

from __future__ import annotations

import concurrent.futures
import math
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import atlas_env, require_program
from tests.helpers.engine import wait_for
from tests.helpers.net import free_port

pytestmark = pytest.mark.integration

IGNORED_PREFIXES = ("go_", "promhttp_")
# Debian's package defaults (prometheus-node-exporter --help), which differ from upstream's.
DEBIAN_MOUNT_POINTS_EXCLUDE = (
    r"^/(dev|proc|run|sys|mnt|media|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
)
DEBIAN_NETDEV_EXCLUDE = "^lo$"
# Families whose series legitimately differ between two exporter processes: each describes its
# own process, build or set of collectors (Atlas implements fewer, so fewer collector labels).
OWN_SERIES = ("process_", "node_exporter_build_info", "node_scrape_collector_")
# Counters allowed to differ by more than 2%: process_cpu_seconds_total is each exporter's own
# CPU time. Small counts that tick between the two reads (softnet's squeezes, carrier changes) get
# an absolute slack of COUNT_SLACK: 1 vs 2 is two reads of a counter that moved, not a disagreement.
VALUE_EXCEPTIONS = {"process_cpu_seconds_total"}
COUNT_SLACK = 2.0
RELATIVE_TOLERANCE = 0.02

TEXTFILE = """\
# HELP backup_last_success_timestamp_seconds When the nightly backup last succeeded.
# TYPE backup_last_success_timestamp_seconds gauge
backup_last_success_timestamp_seconds{job="nightly"} 1.7e+09
# TYPE backup_runs_total counter
backup_runs_total{job="nightly",result="ok"} 12
backup_runs_total{job="nightly"} 1
# TYPE backup_duration_seconds histogram
backup_duration_seconds_bucket{le="60"} 3
backup_duration_seconds_bucket{le="+Inf"} 4
backup_duration_seconds_sum 250
backup_duration_seconds_count 4
"""


@dataclass(frozen=True)
class Family:
    type: str
    label_names: frozenset[str]
    series: dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> dict[str, Family]:
    out = {}
    for fam in text_string_to_metric_families(text):
        structural = {"le", "quantile"}
        out[fam.name] = Family(
            fam.type,
            frozenset(k for s in fam.samples for k in s.labels if k not in structural),
            {(s.name, tuple(sorted(s.labels.items()))): s.value for s in fam.samples},
        )
    return out


def scrape(port: int) -> str:
    # Text format 0.0.4 from both (what the parser reads); Prometheus would negotiate the same.
    resp = httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"Accept": "text/plain"}, timeout=30)
    resp.raise_for_status()
    return resp.text


def scrape_both(ports: tuple[int, int]) -> tuple[dict[str, Family], dict[str, Family]]:
    """Both exporters read at the same moment: two threads released together."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        node, atlas = pool.map(scrape, ports)
    return parse(node), parse(atlas)


def _serving(port: int, proc: subprocess.Popen[bytes], log: Path) -> bool:
    assert proc.poll() is None, log.read_text()
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def exporters(tmp_path: Path) -> Iterator[tuple[int, int]]:
    node_exporter = require_program("prometheus-node-exporter", "prometheus-node-exporter")
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    (textfiles / "backup.prom").write_text(TEXTFILE)
    node_port, atlas_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    logs = [tmp_path / "node_exporter.log", tmp_path / "atlas.log"]
    env = atlas_env(
        tmp_path,
        ATLAS_EXPORTER_PORT=str(atlas_port),
        ATLAS_EXPORTER_HOST="127.0.0.1",
        ATLAS_EXPORTER_TEXTFILE_DIR=str(textfiles),
        ATLAS_EXPORTER_NET_DEVICES_EXCLUDE=DEBIAN_NETDEV_EXCLUDE,
        ATLAS_EXPORTER_MOUNT_POINTS_EXCLUDE=DEBIAN_MOUNT_POINTS_EXCLUDE,
    )
    with logs[0].open("wb") as node_log, logs[1].open("wb") as atlas_log:
        procs.append(
            subprocess.Popen(
                [
                    node_exporter,
                    f"--web.listen-address=127.0.0.1:{node_port}",
                    f"--collector.textfile.directory={textfiles}",
                ],
                stdout=node_log,
                stderr=node_log,
            )
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "atlas", "exporter"], env=env, stdout=atlas_log, stderr=atlas_log
            )
        )
    try:
        wait_for(lambda: _serving(node_port, procs[0], logs[0]), 60, "node_exporter to serve /metrics")
        wait_for(lambda: _serving(atlas_port, procs[1], logs[1]), 60, "atlas exporter to serve /metrics")
        yield node_port, atlas_port
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def family_gaps(node: dict[str, Family], atlas: dict[str, Family]) -> list[str]:
    gaps = []
    for name, theirs in sorted(node.items()):
        if name.startswith(IGNORED_PREFIXES):
            continue
        ours = atlas.get(name)
        if ours is None:
            gaps.append(f"missing family {name} ({theirs.type}, labels {sorted(theirs.label_names)})")
        elif ours.type != theirs.type:
            gaps.append(f"{name}: type {ours.type}, node_exporter's is {theirs.type}")
        elif ours.label_names != theirs.label_names:
            gaps.append(
                f"{name}: labels {sorted(ours.label_names)}, node_exporter's {sorted(theirs.label_names)}"
            )
        elif not name.startswith(OWN_SERIES):
            missing = sorted(set(theirs.series) - set(ours.series))
            if missing:
                gaps.append(f"{name}: series missing: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    return gaps


def value_gaps(node: dict[str, Family], atlas: dict[str, Family]) -> list[str]:
    gaps = []
    for name, theirs in sorted(node.items()):
        ours = atlas.get(name)
        if theirs.type != "counter" or ours is None or name.startswith(IGNORED_PREFIXES):
            continue
        for key, expected in theirs.series.items():
            got = ours.series.get(key)
            if got is None or key[0] in VALUE_EXCEPTIONS:
                continue
            if math.isclose(got, expected, rel_tol=RELATIVE_TOLERANCE, abs_tol=COUNT_SLACK):
                continue
            gaps.append(f"{key[0]}{dict(key[1])}: atlas {got}, node_exporter {expected}")
    return gaps


def report(node: dict[str, Family], atlas: dict[str, Family], gaps: list[str]) -> None:
    compared = [n for n in node if not n.startswith(IGNORED_PREFIXES)]
    shared = [n for n in compared if n in atlas]
    print(
        f"\nnode_exporter: {len(node)} families ({len(compared)} compared, go_*/promhttp_* left out);"
        f" atlas exporter: {len(atlas)} families; shared: {len(shared)}; gaps: {len(gaps)}"
    )
    for gap in gaps:
        print(f"  GAP {gap}")


def test_atlas_exporter_has_every_family_node_exporter_has(exporters: tuple[int, int]) -> None:
    node, atlas = scrape_both(exporters)
    gaps = family_gaps(node, atlas)
    report(node, atlas, gaps)
    assert not gaps, "\n".join(gaps)
    # The textfile went through both the same way.
    assert atlas["node_textfile_scrape_error"].series == node["node_textfile_scrape_error"].series
    assert "backup_duration_seconds" in atlas and "node_textfile_mtime_seconds" in atlas


def test_counters_agree_within_two_percent_read_at_the_same_moment(exporters: tuple[int, int]) -> None:
    node, atlas = scrape_both(exporters)
    compared = sum(
        1
        for n, f in node.items()
        if f.type == "counter" and n in atlas and not n.startswith(IGNORED_PREFIXES)
    )
    gaps = value_gaps(node, atlas)
    print(f"\ncounter families compared: {compared}; disagreements: {len(gaps)}")
    for gap in gaps:
        print(f"  VALUE {gap}")
    assert compared > 20
    assert not gaps, "\n".join(gaps)
