"""The drills' parts: a live Atlas (one process per service, run by the local supervisor), Debian's
Prometheus loading rules compiled from a test copy of alerting.yaml, and a clock for each drill.

The rules are the compiler's output for the test copy (short `for`s, thresholds a drill crosses in
seconds) with one change: the look-back windows of rate()/increase()/deriv() (5m, 15m, 1h) become
WINDOW, so an alert on a rate resolves seconds after its fault is removed rather than 15 minutes.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from atlas.alerting.compiler import RULES_FILE, compile_files
from atlas.alerting.config import load_alerting
from atlas.alerting.rules import GROUP
from tests.conftest import ROOT

WINDOW = "10s"
EVAL_SECONDS = 1.0
FOR = "1s"
FOR_SECONDS = 1.0
# Scrape, exporter read and Prometheus's own lag on a loaded 2-core box: bounded, not measured.
SLACK_SECONDS = 15.0
_WINDOWS = re.compile(r"\[(5m|15m|1h)\]")

# The test copy's thresholds: each crossed by its drill within seconds.
DRILL_ALERTS: dict[str, dict[str, Any]] = {
    "engine_heartbeat_age": {"critical": "5s", "for": FOR},
    "engine_worker_restarts": {"warning": 1, "for": FOR},
    "target_down": {"critical": 1, "for": FOR},
    "queue_backlog": {"warning": 5, "for": FOR},
    "dead_letters": {"warning": 2, "for": FOR},
    "circuit_open_hosts": {"warning": 1, "for": FOR},
    "backup_age": {"warning": "6s", "for": FOR},
    "maintenance_age": {"warning": "1s", "for": FOR},
    "feeds_failing": {"warning": 1, "for": FOR},
    "api_error_rate": {"warning": 10, "for": FOR},
    "db_locked_errors": {"warning": 1, "for": FOR},
}


def compile_drill_rules(out: Path) -> Path:
    """The shipped alerting.yaml with DRILL_ALERTS, compiled by the compiler, windows shortened."""
    data: dict[str, Any] = yaml.safe_load((ROOT / "config" / "alerting.yaml").read_text(encoding="utf-8"))
    data["alerts"].update(DRILL_ALERTS)
    source = out / "alerting.yaml"
    source.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    config, findings = load_alerting(source)
    assert config is not None, findings
    compiled = yaml.safe_load(compile_files(config, source=str(source))[RULES_FILE])
    # The threshold alerts' group only: the SLO burn rates look back days and are drilled by promtool.
    group = next(g for g in compiled["groups"] if g["name"] == GROUP)
    for rule in group["rules"]:
        rule["expr"] = _WINDOWS.sub(f"[{WINDOW}]", rule["expr"])
    rules = out / RULES_FILE
    rules.write_text(yaml.safe_dump({"groups": [group]}, sort_keys=False), encoding="utf-8")
    return rules


def prometheus_config(out: Path, rules: Path, ports: dict[str, int]) -> Path:
    """The shipped prometheus.yml, its targets at the drill's ports, 1 s scrapes and evaluations."""
    shipped: dict[str, Any] = yaml.safe_load((ROOT / "config" / "prometheus.yml").read_text(encoding="utf-8"))
    for job in shipped["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[job['job_name']]}"]}]
    shipped["global"] = {"scrape_interval": "1s", "evaluation_interval": f"{EVAL_SECONDS:g}s"}
    shipped["rule_files"] = [str(rules)]
    shipped.pop("alerting", None)  # no Alertmanager: the drills read alert states from Prometheus
    path = out / "prometheus.yml"
    path.write_text(yaml.safe_dump(shipped), encoding="utf-8")
    return path


@dataclass
class Drill:
    """One failure mode and the alert it must raise. `lag` is how long after the fault the
    condition itself becomes true (an age crossing its threshold); `window` how long a rate keeps
    remembering the fault after it is removed."""

    mode: str
    alert: str
    labels: dict[str, str] = field(default_factory=dict)
    lag: float = 0.0
    window: float = 0.0
    caused: float = 0.0
    fired: float | None = None
    removed: float = 0.0
    resolved: float | None = None

    def matches(self, alert: dict[str, Any]) -> bool:
        labels = alert["labels"]
        return labels.get("alertname") == self.alert and all(
            labels.get(k) == v for k, v in self.labels.items()
        )

    @property
    def fire_deadline(self) -> float:
        return self.lag + FOR_SECONDS + 2 * EVAL_SECONDS + SLACK_SECONDS

    @property
    def resolve_deadline(self) -> float:
        return self.window + 2 * EVAL_SECONDS + SLACK_SECONDS

    def row(self) -> str:
        fired = f"{self.fired - self.caused:.1f}" if self.fired is not None else "-"
        resolved = f"{self.resolved - self.removed:.1f}" if self.resolved is not None else "-"
        shown = self.alert + (
            "{" + ",".join(f"{k}={v}" for k, v in self.labels.items()) + "}" if self.labels else ""
        )
        return f"| {self.mode} | {shown} | {fired} | {resolved} |"


class Alerts:
    """Prometheus's /api/v1/alerts, polled."""

    def __init__(self, url: str) -> None:
        self.url = url

    def current(self) -> list[dict[str, Any]]:
        body = httpx.get(f"{self.url}/api/v1/alerts", timeout=5).json()
        alerts: list[dict[str, Any]] = body["data"]["alerts"]
        return alerts

    def wait(
        self,
        firing: list[Drill] = [],  # noqa: B006 - read only
        resolved: list[Drill] = [],  # noqa: B006 - read only
        tick: Callable[[], None] = lambda: None,
    ) -> None:
        """Until every drill of `firing` has fired and no alert of `resolved` is pending or firing;
        fails naming the drills past their deadline. `tick` runs each round (e.g. purges a DLQ)."""
        while True:
            tick()
            alerts = self.current()
            now = time.monotonic()
            late = []
            for d in firing:
                if d.fired is None:
                    if any(d.matches(a) and a["state"] == "firing" for a in alerts):
                        d.fired = now
                    elif now - d.caused > d.fire_deadline:
                        late.append(f"{d.mode}: {d.alert} not firing after {d.fire_deadline:.0f}s")
            for d in resolved:
                if d.resolved is None:
                    if not any(d.matches(a) for a in alerts):
                        d.resolved = now
                    elif now - d.removed > d.resolve_deadline:
                        late.append(f"{d.mode}: {d.alert} still active after {d.resolve_deadline:.0f}s")
            assert not late, "; ".join(late) + f"\nalerts: {[(a['labels'], a['state']) for a in alerts]}"
            if all(d.fired is not None for d in firing) and all(d.resolved is not None for d in resolved):
                return
            time.sleep(0.25)


def caused(*drills: Drill) -> list[Drill]:
    now = time.monotonic()
    for d in drills:
        d.caused = now
    return list(drills)


def removed(drills: list[Drill]) -> None:
    now = time.monotonic()
    for d in drills:
        d.removed = now


@contextmanager
def process(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real process for the length of the block, stopped with SIGTERM (then SIGKILL)."""
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=out)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
