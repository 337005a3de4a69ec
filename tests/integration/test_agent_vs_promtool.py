"""One set of thresholds, two enforcers: Prometheus and the monitoring agent fire at the same steps.

For every generated promtool test (alertrules/tests/*.yml: each built-in signal, instant, rate,
increase, quantile, deriv trend and ratio, and each SLO's burn-rate alerts), the agent's evaluator
is fed the test's input series at the same timestamps (an injected clock, no sleeping) and
evaluated at every evaluation step. Its trace, which alert instances are pending or firing with
which labels at each step, is written as a promtool test of `ALERTS` at every step, next to the
original assertions, and promtool runs it against the committed atlas.rules.yml: it passes only
if Prometheus's rule manager is in exactly the agent's state at every step.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml

from atlas.alerting.config import read_alerting
from atlas.monitor.compiled import AgentRules, agent_alerts
from atlas.monitor.evaluate import Evaluator, reads
from atlas.monitor.history import History
from tests.conftest import ROOT, require_program

pytestmark = pytest.mark.integration
OUT = ROOT / "alertrules"
# One signal of each kind the compiler emits (promtool over every file takes minutes on CI's cores).
KINDS = {
    "queue_backlog": "instant",
    "dead_letter_rate": "rate",
    "engine_worker_restarts": "increase",
    "api_latency_p99": "histogram quantile",
    "disk_fill_hours": "deriv trend",
    "processing_success_rate": "ratio of rates",
    "slo_processing_success": "SLO multi-window burn rate",
}
_SERIES = re.compile(r"^([^{]+)\{(.*)\}$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
_SEGMENT = re.compile(r"^(-?[\d.e+]+)([+-])([\d.e+]+)x(\d+)$")


def seconds(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", text))


def expand(values: str) -> list[float]:
    """promtool's expanding notation as the generated tests write it: `a+bxN a-bxN ...`."""
    out: list[float] = []
    for segment in values.split():
        m = _SEGMENT.match(segment)
        assert m, f"unsupported input value {segment!r}"
        start, sign, step, n = float(m[1]), m[2], float(m[3]), int(m[4])
        out += [start + (step if sign == "+" else -step) * i for i in range(n + 1)]
    return out


def parse_series(text: str) -> dict[str, str]:
    m = _SERIES.match(text)
    assert m, text
    return {"__name__": m[1], **dict(_LABEL.findall(m[2]))}


def alerts_selector(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def agent_trace(case: dict[str, Any], rules: AgentRules, eval_step: int) -> list[dict[str, Any]]:
    """promql_expr_test entries: ALERTS as the agent sees them at every evaluation step."""
    interval = seconds(case["interval"])
    series = [(parse_series(s["series"]), expand(s["values"])) for s in case["input_series"]]
    end = max(len(v) for _, v in series) * interval - interval
    history = History(reads(rules.alerts), interval)
    evaluator = Evaluator(rules.alerts)
    checks, fed = [], 0
    for now in range(0, end + 1, eval_step):
        while fed * interval <= now:
            for n, (labels, values) in enumerate(series):
                if fed < len(values):  # one job per series: an ended series is not marked stale
                    history.ingest(f"s{n}", float(fed * interval), [(labels, values[fed])])
            fed += 1
        evaluator.evaluate(history, float(now))
        samples = []
        for (name, severity, labels), state in sorted(evaluator.active().items()):
            full = {"__name__": "ALERTS", "alertname": name, "alertstate": state}
            full.update({**dict(labels), **rules.meta[(name, severity)].labels})
            samples.append(
                {
                    "labels": "ALERTS" + alerts_selector({k: v for k, v in full.items() if k != "__name__"}),
                    "value": 1,
                }
            )
        checks.append({"expr": "ALERTS", "eval_time": f"{now}s", "exp_samples": samples})
    return checks


def test_agent_and_prometheus_fire_and_resolve_at_the_same_steps(tmp_path: Path) -> None:
    promtool = require_program("promtool", "prometheus")
    every = agent_alerts(read_alerting(ROOT / "config" / "alerting.yaml"))
    groups = yaml.safe_load((OUT / "atlas.rules.yml").read_text(encoding="utf-8"))["groups"]
    written = []
    for name in KINDS:
        path = OUT / "tests" / f"{name}.yml"
        # Both enforcers get the one rule group the file tests (the threshold alerts, or one SLO's
        # rules): promtool evaluates every rule at every step, and the whole file costs minutes.
        group = f"atlas.slo.{name[4:]}" if name.startswith("slo_") else "atlas.alerts"
        (tmp_path / f"{name}.rules.yml").write_text(
            yaml.safe_dump({"groups": [g for g in groups if g["name"] == group]}), encoding="utf-8"
        )
        names = {r["alert"] for g in groups if g["name"] == group for r in g["rules"] if "alert" in r}
        rules = replace(every, alerts=[a for a in every.alerts if a.name in names])
        firing = resolved = 0
        spec = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
        eval_step = seconds(spec["evaluation_interval"])
        for case in spec["tests"]:
            trace = agent_trace(case, rules, eval_step)
            mine = f'alertname="{case["alert_rule_test"][0]["alertname"]}",alertstate="firing"'
            states = [any(mine in s["labels"] for s in c["exp_samples"]) for c in trace]
            firing += sum(states)
            resolved += sum(1 for a, b in pairwise(states) if a and not b)
            case["promql_expr_test"] = case.get("promql_expr_test", []) + trace
        spec["rule_files"] = [f"{name}.rules.yml"]
        out = tmp_path / path.name
        out.write_text(yaml.dump(spec, Dumper=yaml.CSafeDumper, sort_keys=False), encoding="utf-8")
        written.append(out.name)
        assert firing and resolved, f"{path.name}: the agent's trace never fires and resolves"
    done = subprocess.run(
        [promtool, "test", "rules", *written], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
