"""`python tools/monitoring_agent.py --daemon --config ...` against a real exporter: CPU busy (a
rate of node_cpu_seconds_total, read by the exporter from a fixture procfs whose counters the test
advances) fires AtlasCpuUsage; maintenance left on fires AtlasMaintenanceAge to a real webhook,
turning it off resolves it; SIGTERM exits 0."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import ROOT, atlas_env
from tests.helpers.engine import wait_for
from tests.helpers.net import free_port
from tests.helpers.opscli import atlas_ops, ok_json
from tests.helpers.procfs_tree import STAT, write_tree
from tests.helpers.receivers import HttpReceiver
from tests.helpers.router import config_dir

SHIM = ROOT / "tools" / "monitoring_agent.py"
ALERTING = """version: 1
alerts:
  maintenance_age:
    warning: 1s
    critical: 1h
    for: 1s
    cooldown: 1h
  cpu_usage:
    warning: 70
    critical: 95
    for: 1s
    cooldown: 1h
"""


def advance_cpu(proc: Path, ticks: list[int]) -> bool:
    """Busy 9 ticks in 10 on both CPUs (90%); written by rename so the exporter never reads half."""
    ticks[0] += 1
    busy, idle = 200 + 90 * ticks[0], 2500 + 10 * ticks[0]
    lines = [f"cpu{n} {busy} 10 60 {idle} 30 0 5 3 0 0" for n in (0, 1)]
    text = STAT.replace(
        "cpu0 200 10 60 2500 30 0 5 3 0 0\ncpu1 100 10 40 2500 10 0 5 2 0 0", "\n".join(lines)
    )
    assert text != STAT
    (proc / "stat.new").write_text(text, encoding="ascii")
    (proc / "stat.new").replace(proc / "stat")
    return False


def alerts_of(hook: HttpReceiver, name: str = "") -> list[tuple[str, str, str]]:
    out = []
    for r in hook.ok():
        for a in json.loads(r.body)["alerts"]:
            if a["labels"]["alertname"].startswith(name):
                out.append((a["labels"]["alertname"], a["labels"]["severity"], a["status"]))
    return out


def test_daemon_fires_and_resolves_maintenance_left_on(tmp_path: Path) -> None:
    hook = HttpReceiver()
    cfg = config_dir(tmp_path, webhook_url=hook.url)
    (cfg / "alerting.yaml").write_text(ALERTING, encoding="utf-8")
    monitoring = cfg / "monitoring.yaml"
    monitoring.write_text(
        monitoring.read_text().replace("version: 1\n", "version: 1\nintervals:\n  evaluation: 200ms\n"),
        encoding="utf-8",
    )
    port = free_port()
    proc = write_tree(tmp_path)
    data = tmp_path / "data"
    env = atlas_env(
        data,
        ATLAS_CONFIG_DIR=str(cfg),
        ATLAS_ENVIRONMENT="development",
        ATLAS_EXPORTER_PORT=str(port),
        ATLAS_API_PORT=str(free_port()),  # nothing serves it: a down target the config does not alert on
        ATLAS_EXPORTER_PROCFS=str(proc),
    )
    assert atlas_ops(env, "database", "migrate").returncode == 0
    log = tmp_path / "procs.log"
    with log.open("ab") as out:
        exporter = subprocess.Popen(
            [sys.executable, "-m", "atlas", "exporter"], env=env, stdout=out, stderr=out
        )
        agent = subprocess.Popen(
            [sys.executable, str(SHIM), "--daemon", "--config", str(monitoring)],
            env=env,
            stdout=out,
            stderr=out,
        )
    try:

        def up() -> bool:
            assert exporter.poll() is None and agent.poll() is None, log.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, 60, "the exporter")
        wait_for(lambda: (data / "run" / "atlas-monitoring.pid").exists(), 60, "the agent's pid file")
        assert alerts_of(hook) == []  # the fixture's CPU counters stand still: no rate yet
        ticks = [0]
        wait_for(lambda: advance_cpu(proc, ticks) or alerts_of(hook) != [], 30, "AtlasCpuUsage to fire")
        assert alerts_of(hook) == [("AtlasCpuUsage", "warning", "firing")]
        cpu = json.loads(hook.ok()[0].body)["alerts"][0]
        busy = re.search(
            r"^CPU busy, all cores, last 5 minutes\. Now ([\d.]+)% ", cpu["annotations"]["description"]
        )
        assert busy and 85 < float(busy[1]) < 95, cpu  # ~90% from the counters' rates, warning band
        ok_json(env, "maintenance", "mode", "--enable", "--reason", "left on by a test")
        maint = "AtlasMaintenance"
        wait_for(lambda: alerts_of(hook, maint) != [], 30, "AtlasMaintenanceAge to fire")
        assert alerts_of(hook, maint) == [("AtlasMaintenanceAge", "warning", "firing")]
        body = json.loads(hook.ok()[1].body)
        assert body["alerts"][0]["annotations"]["runbook_url"].endswith("#atlasmaintenanceage")
        ok_json(env, "maintenance", "mode", "--disable")
        wait_for(lambda: len(alerts_of(hook, maint)) == 2, 30, "AtlasMaintenanceAge to resolve")
        assert alerts_of(hook, maint)[1] == ("AtlasMaintenanceAge", "warning", "resolved")
    finally:
        agent.send_signal(signal.SIGTERM)
        exporter.send_signal(signal.SIGTERM)
        agent_code, exporter_code = agent.wait(timeout=60), exporter.wait(timeout=60)
        hook.close()
    assert agent_code == 0 and exporter_code == 0, log.read_text()
    assert not (data / "run" / "atlas-monitoring.pid").exists()
