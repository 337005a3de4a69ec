"""End to end: Debian's Prometheus scrapes a live `atlas up`, evaluates the compiled alert rules,
sends to Debian's Alertmanager running the compiled alertmanager.yml, which sends to the router
inside `atlas up`; the email (aiosmtpd), webhook and Slack receivers each get the firing
notification, then the resolved one once the condition clears.

The condition is real: maintenance mode, switched on and off with `atlas-ops maintenance mode`.
The test's alerting.yaml is the shipped one with `maintenance_age` made to fire at once (warning
after 1s, `for: 1s`); it is compiled with the compiler's own functions, so the rules and the
routing are the ones `atlas-ops alerts compile` writes, except for the router's address and token
file (alerting.yaml's `router:`) and Alertmanager's group timings, shortened so the test is quick.
Other shipped alerts may fire on this machine (disk, memory): receivers are read for
AtlasMaintenanceAge only.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import ROOT, atlas_env, require_program
from tests.helpers.engine import wait_for
from tests.helpers.net import free_port
from tests.helpers.opscli import ok_json
from tests.helpers.receivers import HttpReceiver, Received, SmtpSink
from tests.helpers.router import TOKEN, alerting_yaml, compile_into, config_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ALERT = "AtlasMaintenanceAge"


class Proc:
    """A real process with its log, started now, stopped by `stop()`."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.log = name, log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(argv, stdout=out, stderr=out, env=env)

    def alive(self) -> None:
        assert self.popen.poll() is None, f"{self.name} exited: {self.log.read_text(errors='replace')}"

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait(timeout=30)


def serving(proc: Proc, url: str) -> bool:
    proc.alive()
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def receivers() -> Iterator[tuple[HttpReceiver, HttpReceiver, SmtpSink]]:
    hook, slack, sink = HttpReceiver(), HttpReceiver(), SmtpSink(free_port())
    sink.start()
    try:
        yield hook, slack, sink
    finally:
        hook.close()
        slack.close()
        sink.stop()


def _statuses(requests: list[Received]) -> list[str]:
    """The status of each AtlasMaintenanceAge notification a webhook receiver got, in order."""
    out = []
    for r in requests:
        body = json.loads(r.body)
        if any(a["labels"].get("alertname") == ALERT for a in body["alerts"]):
            out.append(body["status"])
    return out


def _slack_statuses(requests: list[Received]) -> list[str]:
    out = []
    for r in requests:
        header = json.loads(r.body)["text"]
        if ALERT in header:
            out.append("resolved" if "[RESOLVED]" in header else "firing")
    return out


def _mail_statuses(sink: SmtpSink) -> list[str]:
    return [
        "resolved" if s.startswith("[RESOLVED]") else "firing" for s in sink.subjects() if f"] {ALERT} " in s
    ]


def test_prometheus_alertmanager_router_deliver_firing_then_resolved_on_every_channel(
    tmp_path: Path, receivers: tuple[HttpReceiver, HttpReceiver, SmtpSink]
) -> None:
    prometheus = require_program("prometheus", "prometheus")
    alertmanager = require_program("prometheus-alertmanager", "prometheus-alertmanager")
    amtool = require_program("amtool", "prometheus-alertmanager")
    hook, slack, sink = receivers
    api_port, exporter_port, router_port, core_port = (free_port() for _ in range(4))
    prom_port, am_port = free_port(), free_port()
    router_url = f"http://127.0.0.1:{router_port}"

    cfg = config_dir(tmp_path, webhook_url=hook.url, slack_url=slack.url, smtp_port=sink.port)
    token_file = tmp_path / "router-token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    # The router reads the same alerting.yaml (its cooldowns and channels) as the compiler did.
    source = alerting_yaml(
        cfg / "alerting.yaml",
        router_url,
        token_file,
        maintenance_age={"warning": "1s", "for": "1s", "cooldown": "1h"},
    )
    rules, am_config = compile_into(source, tmp_path)

    env = atlas_env(
        tmp_path / "data",
        ATLAS_CONFIG_DIR=str(cfg),
        ATLAS_ENVIRONMENT="development",
        ATLAS_API_PORT=str(api_port),
        ATLAS_EXPORTER_PORT=str(exporter_port),
        ATLAS_ROUTER_PORT=str(router_port),
        ATLAS_CORE_METRICS_PORT=str(core_port),
        ATLAS_WORKERS="1",
    )
    # The shipped prometheus.yml with its targets at the test's ports, its rules the compiled ones.
    shipped: dict[str, Any] = yaml.safe_load((ROOT / "config" / "prometheus.yml").read_text(encoding="utf-8"))
    ports = {
        "node": exporter_port,
        "atlas-api": api_port,
        "atlas-core": core_port,
        "atlas-router": router_port,
    }
    for job in shipped["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[job['job_name']]}"]}]
    shipped["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    shipped["rule_files"] = [str(rules)]
    shipped["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{am_port}"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(shipped), encoding="utf-8")

    check = subprocess.run(
        [amtool, "check-config", str(am_config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stdout + check.stderr

    procs: list[Proc] = []
    try:
        up = Proc("atlas up", [sys.executable, "-m", "atlas", "up"], tmp_path / "up.log", env)
        procs.append(up)
        am = Proc(
            "alertmanager",
            [
                alertmanager,
                f"--config.file={am_config}",
                f"--storage.path={tmp_path / 'am'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",  # one Alertmanager: no gossip port
            ],
            tmp_path / "alertmanager.log",
        )
        procs.append(am)
        prom = Proc(
            "prometheus",
            [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            tmp_path / "prometheus.log",
        )
        procs.append(prom)
        wait_for(lambda: serving(up, f"{router_url}/health/ready"), 90, "atlas up's alert router")
        wait_for(lambda: serving(up, f"http://127.0.0.1:{exporter_port}/metrics"), 60, "atlas up's exporter")
        wait_for(lambda: serving(am, f"http://127.0.0.1:{am_port}/-/ready"), 30, "Alertmanager")
        wait_for(lambda: serving(prom, f"http://127.0.0.1:{prom_port}/-/ready"), 30, "Prometheus")

        ok_json(env, "maintenance", "mode", "--enable", "--reason", "e2e test")
        wait_for(
            lambda: (
                _statuses(hook.ok()) == ["firing"]
                and _slack_statuses(slack.ok()) == ["firing"]
                and _mail_statuses(sink) == ["firing"]
            ),
            60,
            f"the firing {ALERT} notification on every channel",
        )

        ok_json(env, "maintenance", "mode", "--disable")
        wait_for(
            lambda: (
                _statuses(hook.ok()) == ["firing", "resolved"]
                and _slack_statuses(slack.ok()) == ["firing", "resolved"]
                and _mail_statuses(sink) == ["firing", "resolved"]
            ),
            60,
            f"the resolved {ALERT} notification on every channel",
        )
        subjects = [s for s in sink.subjects() if ALERT in s]
        assert subjects[0].startswith(f"[FIRING:1] {ALERT} ") and "warning" in subjects[0], subjects
        assert subjects[1].startswith(f"[RESOLVED] {ALERT} "), subjects
        # The webhook got the alert as Prometheus labelled it from the compiled rule.
        fired = json.loads(next(r.body for r in hook.ok() if ALERT.encode() in r.body))
        labels = fired["alerts"][0]["labels"]
        assert labels["severity"] == "warning" and labels["instance"] == f"127.0.0.1:{exporter_port}"
        assert fired["alerts"][0]["annotations"]["runbook_url"].endswith("#atlasmaintenanceage")
    finally:
        for p in reversed(procs):
            p.stop()
    assert up.popen.returncode == 0, (tmp_path / "up.log").read_text(errors="replace")
