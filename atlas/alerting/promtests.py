"""Generated promtool unit tests: per alert, the thresholds proven by Prometheus's own evaluator.

For each enabled built-in alert, from the raw series its recording rule reads (atlas.alerting.fixtures):

1. silent: the value just on the safe side of warning (or critical), held past `for`: no alert;
2. pending: the value between warning and critical: `ALERTS{alertstate="pending"}` before `for`
   has passed and nothing firing, then the warning firing with its labels and annotations;
3. critical: the value past critical: warning and critical both firing with their labels and
   annotations (Alertmanager's inhibition keeps the critical one); then the value back to normal:
   nothing firing once the signal's window and `keep_firing_for` have passed.

Timing is derived, not guessed: the evaluation interval is a quarter of `for` (at most a minute),
and the instant a condition starts is computed from the fixture (ramping counter rates included),
so every check sits at least one interval away from a boundary.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from atlas.alerting.config import AlertRule
from atlas.alerting.fixtures import DECLINE_BYTES_PER_SECOND, FIXTURES, Fixture
from atlas.alerting.humanize import BY_NAME
from atlas.alerting.rules import CompiledAlert, duration
from atlas.alerting.signals import UNIT_FORMAT
from atlas.errors import ConfigError


class TestGenerationError(ConfigError):
    """A rule's tests cannot be generated (e.g. an annotation template the generator cannot render)."""


def _nice(value: float, unit: str, integral: bool) -> float:
    if integral or (unit in ("seconds", "bytes", "count") and abs(value) >= 10):
        return float(round(value))
    if unit == "seconds":
        return float(f"{value:.3g}")
    return float(f"{value:.4g}")


def _past(value: float, threshold: float, op: str) -> bool:
    return {
        ">": value > threshold,
        ">=": value >= threshold,
        "<": value < threshold,
        "<=": value <= threshold,
    }[op]


@dataclass(frozen=True)
class Targets:
    safe: float  # just on the good side of the first threshold
    mid: float | None  # between warning and critical (None without a warning)
    crit: float  # past the worst threshold
    normal: float  # comfortably good


def targets(rule: AlertRule, fixture: Fixture) -> Targets:
    s, th = rule.signal, rule.thresholds
    up = s.direction == "above"
    first = th.get("warning", th.get("critical", 0.0))
    worst = th.get("critical", first)
    # Counts of series are whole numbers; ramping rates (even of ">=" signals) are not.
    unit, integral = s.unit, fixture.integral or (s.op == ">=" and not fixture.ramp)

    def nice(v: float) -> float:
        return _nice(v, unit, integral)

    if up:
        safe = nice(first * 0.95)
        if safe >= first or (s.op == ">=" and safe >= first):
            safe = first - 1
        crit = worst if integral and s.op == ">=" else nice(min(worst * 1.05, (worst + s.hi) / 2))
        if crit <= worst and not (integral and s.op == ">="):
            crit = worst + 1
        mid = None
        if "warning" in th:
            mid = (
                nice((th["warning"] + worst) / 2)
                if "critical" in th
                else nice(min(first * 1.05, (first + s.hi) / 2))
            )
            if integral and s.op == ">=" and "critical" in th and worst - first >= 1:
                mid = first
        normal = nice(first * 0.5) if not integral else 0.0
    else:
        safe = nice(min(first * 1.05, (first + s.hi) / 2))
        crit = nice(worst * 0.95)
        mid = nice((th["warning"] + worst) / 2) if "warning" in th and "critical" in th else None
        if "warning" in th and "critical" not in th:
            mid = nice(first * 0.95)
        normal = nice(min(first * 2, s.hi))
    if mid is not None and "critical" not in th and not _past(mid, first, s.comparison):
        # Rounding took the value back onto the threshold (10 * 1.05 rounds half-even to 10):
        # step to the next whole value past it (from 10 up the unit's rounding is whole numbers).
        mid = first + 1 if up else first - 1
    t = Targets(max(safe, 0.0), mid, crit, max(normal, 0.0))
    op = s.comparison
    checks = [(t.safe, first, False), (t.crit, worst, True)]
    if t.mid is not None:
        checks += [(t.mid, th["warning"], True)] + ([(t.mid, worst, False)] if "critical" in th else [])
    for value, threshold, want in checks:
        if _past(value, threshold, op) != want:
            raise TestGenerationError(f"{rule.name}: no test value found around {threshold:g} ({value:g})")
    return t


class Timeline:
    """Phases of target values rendered as promtool input series, and the value at any instant."""

    def __init__(self, fixture: Fixture, window: float, step: int) -> None:
        self.fixture, self.window, self.step = fixture, window, step
        self.phases: list[tuple[int, float]] = []  # (samples, target)

    def add(self, seconds: float, target: float) -> int:
        """Append a phase lasting at least `seconds`; returns when it starts."""
        start = sum(n for n, _ in self.phases) * self.step
        self.phases.append((max(1, math.ceil(seconds / self.step)), target))
        return start

    @property
    def end(self) -> int:
        return sum(n for n, _ in self.phases) * self.step

    def value(self, t: float) -> float | None:
        """The signal's value at evaluation time t (within the first phase, where tests read it)."""
        n, target = self.phases[0]
        if t > n * self.step:
            raise TestGenerationError("values are only computed within the first phase")
        kinds = {kind for _, kind, _ in self.fixture.series(target)}
        if kinds & {"counter", "decline"} and t < self.step:
            return None  # a rate needs two samples
        if "decline" in kinds:
            return target - t / 3600
        if self.fixture.ramp:
            return target * min(t, self.window) / self.window
        return target

    def input_series(self) -> list[dict[str, str]]:
        current: dict[str, float] = {}
        parts: dict[str, list[str]] = {}
        t0 = 0
        for n, target in self.phases:
            for selector, kind, param in self.fixture.series(target):
                start, slope = _segment(kind, param, t0, current.get(selector, 0.0))
                inc = slope * self.step
                sign = "-" if inc < 0 else "+"  # promtool's expanding notation: a+bxN, a-bxN
                parts.setdefault(selector, []).append(f"{_num(start)}{sign}{_num(abs(inc))}x{n - 1}")
                current[selector] = start + slope * n * self.step
            t0 += n * self.step
        return [{"series": s, "values": " ".join(v)} for s, v in parts.items()]


def _segment(kind: str, param: float, t0: float, previous: float) -> tuple[float, float]:
    if kind == "gauge":
        return param, 0.0
    if kind == "counter":
        return previous, param
    if kind == "age":
        return t0 - param, 1.0
    if kind == "decline":
        return DECLINE_BYTES_PER_SECOND * param * 3600, -DECLINE_BYTES_PER_SECOND
    raise ValueError(kind)


def _num(value: float) -> str:
    return f"{value:.15g}"


def go_value(value: float) -> str:
    """`{{ $value }}` as Go prints a float64 (strconv 'g', shortest)."""
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


_TEMPLATE = re.compile(r"\{\{\s*(\$value(?:\s*\|\s*(\w+))?|\$labels\.(\w+))\s*\}\}")


def render(text: str, value: float, labels: dict[str, str]) -> str:
    """The few Prometheus template forms annotations use: $value (humanized) and $labels.x."""

    def sub(m: re.Match[str]) -> str:
        if m.group(3):
            return labels.get(m.group(3), "")
        fn = m.group(2)
        if fn is None:
            return go_value(value)
        if fn not in BY_NAME:
            raise TestGenerationError(f"cannot render template function {fn!r} in a generated test")
        return BY_NAME[fn](value)

    out = _TEMPLATE.sub(sub, text)
    if "{{" in out:
        raise TestGenerationError(f"cannot render the template {text!r} in a generated test")
    return out


def _first_past(tl: Timeline, threshold: float, op: str, until: int) -> int:
    """The first evaluation at which the condition holds, and holds from then on."""
    start = None
    for t in range(0, until + 1, tl.step):
        v = tl.value(t)
        # A value within a hair of the threshold is ambiguous in float arithmetic: not counted.
        # Equality is exact only for whole counts under ">=".
        exact = op in (">=", "<=") and v == threshold == int(threshold)
        clear = v is not None and (exact or abs(v - threshold) > 1e-9 * max(1.0, abs(threshold)))
        ok = v is not None and _past(v, threshold, op) and clear
        start = (start if start is not None else t) if ok else None
    if start is None:
        raise TestGenerationError(f"the condition never holds before {until}s")
    return start


def _expected(alerts: list[CompiledAlert], value: float, labels: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    for alert in alerts:
        exp_labels = {**labels, **alert.labels}
        annotations = {k: render(v, value, exp_labels) for k, v in alert.body["annotations"].items()}
        out.append({"exp_labels": exp_labels, "exp_annotations": annotations})
    return out


def _pending(name: str, alert: CompiledAlert, labels: dict[str, str]) -> str:
    all_labels = {"alertname": name, "alertstate": "pending", **labels, **alert.labels}
    return "ALERTS{" + ",".join(f'{k}="{v}"' for k, v in sorted(all_labels.items())) + "}"


def rule_tests(rule: AlertRule, alerts: list[CompiledAlert], rule_file: str) -> dict[str, Any] | None:
    """The promtool test file (as data) for one rule's alerts, or None when it has no fixture."""
    fixture = FIXTURES.get(rule.name)
    if rule.custom or fixture is None:
        return None
    name = alerts[0].name
    by_severity = {a.severity: a for a in alerts}
    op = rule.signal.comparison
    window = rule.signal.window_seconds
    for_s = rule.for_seconds
    step = max(1, min(60, int(for_s // 4))) if for_s else 60
    keep = rule.keep_firing_for_seconds
    t = targets(rule, fixture)
    tests: list[dict[str, Any]] = []
    settle = (window if fixture.ramp else 0) + 2 * step

    def case(
        doc: str, tl: Timeline, checks: list[dict[str, Any]], exprs: list[dict[str, Any]] | None = None
    ) -> None:
        body: dict[str, Any] = {"name": doc, "interval": f"{step}s", "input_series": tl.input_series()}
        body["alert_rule_test"] = checks
        if exprs:
            body["promql_expr_test"] = exprs
        tests.append(body)

    # 1. silent just on the safe side of the first threshold.
    tl = Timeline(fixture, window, step)
    tl.add(settle + for_s + 2 * step, t.safe)
    first = alerts[0].threshold
    for at in range(0, tl.end, step):
        v = tl.value(at)
        if v is not None and _past(v, first, op):
            raise TestGenerationError(
                f"{rule.name}: the safe value {t.safe:g} drifts past {first:g} by {at}s"
            )
    case(
        f"{name}: silent at {t.safe:g}, just inside the first threshold",
        tl,
        [{"eval_time": f"{tl.end - step}s", "alertname": name, "exp_alerts": []}],
    )

    # 2. between warning and critical: pending, then the warning firing.
    if t.mid is not None:
        warning = by_severity["warning"]
        tl = Timeline(fixture, window, step)
        tl.add(settle + for_s + 3 * step, t.mid)
        start = _first_past(tl, warning.threshold, op, tl.end - step)
        fire = start + int(for_s) + step
        checks = [
            {
                "eval_time": f"{fire}s",
                "alertname": name,
                "exp_alerts": _expected([warning], _value(tl, fire), fixture.labels),
            }
        ]
        exprs = None
        if for_s >= 2 * step:
            checks.insert(0, {"eval_time": f"{start + step}s", "alertname": name, "exp_alerts": []})
            # Still only pending one interval before `for` has passed: a shortened `for` fails here.
            checks.insert(
                1, {"eval_time": f"{start + int(for_s) - step}s", "alertname": name, "exp_alerts": []}
            )
            exprs = [
                {
                    "expr": _pending(name, warning, fixture.labels),
                    "eval_time": f"{start + step}s",
                    "exp_samples": [{"labels": _pending(name, warning, fixture.labels), "value": 1}],
                }
            ]
        case(f"{name}: pending, then warning at {t.mid:g}", tl, checks, exprs)

    # 3. past critical: every severity firing; then back to normal: resolved.
    tl = Timeline(fixture, window, step)
    tl.add(settle + for_s + 3 * step, t.crit)
    crit_start = max(_first_past(tl, a.threshold, op, tl.phases[0][0] * step - step) for a in alerts)
    fire = crit_start + int(for_s) + step
    if fire >= tl.end:
        tl.phases[0] = (math.ceil((fire + step) / step), t.crit)
    cleared = tl.add(window + keep + 3 * step, t.normal)
    checks = [
        {
            "eval_time": f"{fire}s",
            "alertname": name,
            "exp_alerts": _expected(alerts, _value(tl, fire), fixture.labels),
        },
        {"eval_time": f"{tl.end - step}s", "alertname": name, "exp_alerts": []},
    ]
    case(f"{name}: critical at {t.crit:g}, resolved at {t.normal:g} from {cleared}s", tl, checks)
    return {
        "rule_files": [rule_file],
        "evaluation_interval": f"{step}s",
        "tests": tests,
    }


def _value(tl: Timeline, t: int) -> float:
    v = tl.value(t)
    if v is None:
        raise TestGenerationError(f"no value at {t}s")
    return v


__all__ = ["UNIT_FORMAT", "TestGenerationError", "duration", "rule_tests"]
