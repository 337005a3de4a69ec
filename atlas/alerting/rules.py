"""alerting.yaml -> Prometheus rule groups (atlas.rules.yml).

Per built-in signal one recording rule (its `level:metric:operations` series) and, per threshold, an
alert `Atlas<Signal>` with label `severity`; both alerts of a signal fire when the value is past
critical (Alertmanager's inhibition keeps only the critical one). Recording rules come first in the
same group as the alerts: rules in a group are evaluated in order, so an alert always compares the
value recorded in the same evaluation, never the previous one. Every alert's `dashboard_url`
annotation is the Grafana panel that plots its signal (atlas.dashboards.alertpanels.dashboard_urls).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from atlas.alerting.config import AlertingConfig, AlertRule
from atlas.alerting.humanize import BY_NAME
from atlas.alerting.query import duration as duration  # re-exported: rules.duration is the public name
from atlas.alerting.signals import UNIT_FORMAT, alert_name
from atlas.alerting.slo import BURN_ALERTS, SLO, recording_rules
from atlas.alerting.slo import alert_expr as slo_alert_expr
from atlas.alerting.slo import alert_name as slo_alert_name
from atlas.dashboards.alertpanels import dashboard_urls

RUNBOOKS = "docs/runbooks.md"
GROUP = "atlas.alerts"


def number(value: float) -> str:
    """A threshold as PromQL reads it."""
    return f"{value:.12g}"


def shown(value: float, unit: str) -> str:
    """A threshold as annotations and runbooks show it (durations as written in alerting.yaml)."""
    if unit == "seconds":
        return duration(value)
    fn, suffix = UNIT_FORMAT[unit]
    return BY_NAME[fn](value) + suffix


def anchor(name: str) -> str:
    """The runbooks.md anchor of an alert whose heading is its name (GitHub lower-cases headings)."""
    return name.lower()


def runbook_url(rule_url: str | None, name: str) -> str:
    return rule_url or f"{RUNBOOKS}#{anchor(name)}"


@dataclass(frozen=True)
class CompiledAlert:
    """One alerting rule as written to atlas.rules.yml, plus what the tests and routes need."""

    name: str
    severity: str
    rule: AlertRule
    threshold: float
    body: dict[str, Any]

    @property
    def labels(self) -> dict[str, str]:
        labels: dict[str, str] = self.body["labels"]
        return labels


def _where(rule: AlertRule) -> str:
    return ", ".join(f"{label} {{{{ $labels.{label} }}}}" for label in rule.signal.by)


def annotations_for(rule: AlertRule, severity: str, threshold: float, dashboard_url: str) -> dict[str, str]:
    signal = rule.signal
    fn, suffix = UNIT_FORMAT[signal.unit]
    op = signal.comparison
    limit = shown(threshold, signal.unit)
    where = _where(rule)
    at = f" ({where})" if where else ""
    summary = f"Atlas {signal.title} {op} {limit}{at}"
    description = (
        f"{signal.doc} Now {{{{ $value | {fn} }}}}{suffix}{at}; the {severity} threshold is {op} {limit}."
    )
    if rule.summary:
        summary = rule.summary.replace("{threshold}", limit)
    if rule.description:
        description = rule.description.replace("{threshold}", limit)
    name = alert_name(rule.name)
    return {
        "summary": summary,
        "description": description,
        "runbook_url": runbook_url(rule.runbook_url, name),
        "dashboard_url": dashboard_url,
    }


def alert_expr(rule: AlertRule, threshold: float) -> str:
    if rule.custom:
        return rule.signal.expr.replace("{threshold}", number(threshold))
    return f"{rule.signal.record} {rule.signal.comparison} {number(threshold)}"


def compile_alerts(rule: AlertRule, dashboard_url: str) -> list[CompiledAlert]:
    out = []
    for severity, threshold in sorted(rule.thresholds.items(), key=lambda kv: kv[0] == "critical"):
        labels = {"severity": severity, **dict(rule.labels)}
        if rule.channels:
            labels["channels"] = ",".join(rule.channels)
        body: dict[str, Any] = {"alert": alert_name(rule.name), "expr": alert_expr(rule, threshold)}
        if rule.for_seconds:
            body["for"] = duration(rule.for_seconds)
        if rule.keep_firing_for_seconds:
            body["keep_firing_for"] = duration(rule.keep_firing_for_seconds)
        body["labels"] = labels
        body["annotations"] = annotations_for(rule, severity, threshold, dashboard_url)
        out.append(CompiledAlert(alert_name(rule.name), severity, rule, threshold, body))
    return out


def slo_alerts(slo: SLO, dashboard_url: str) -> list[dict[str, Any]]:
    name = slo_alert_name(slo)
    title, period = slo.name.replace("_", " "), duration(slo.period_seconds)
    out = []
    for severity, sloth_severity, pairs in BURN_ALERTS:
        labels = {"severity": severity, "sloth_severity": sloth_severity}
        if slo.channels:
            labels["channels"] = ",".join(slo.channels)
        burns = " or ".join(f"{f:g}x over {long_w} and {short_w}" for f, long_w, short_w in pairs)
        out.append(
            {
                "alert": name,
                "expr": slo_alert_expr(slo, pairs),
                "labels": labels,
                "annotations": {
                    "summary": f"Atlas {title} SLO is burning its error budget ({sloth_severity})",
                    "description": slo.description
                    or (
                        f"{slo.sli.doc} Objective {slo.objective * 100:g}% over {period}; "
                        f"errors are spending the budget at {burns} its sustainable rate."
                    ),
                    "runbook_url": runbook_url(slo.runbook_url, name),
                    "dashboard_url": dashboard_url,
                },
            }
        )
    return out


def rule_groups(config: AlertingConfig) -> tuple[list[dict[str, Any]], list[CompiledAlert]]:
    """The rule groups of atlas.rules.yml and the compiled threshold alerts (enabled ones only)."""
    records: list[dict[str, Any]] = []
    alerts: list[CompiledAlert] = []
    seen: set[str] = set()
    urls = dashboard_urls(config)
    for rule in config.rules:
        if not rule.enabled:
            continue
        if not rule.custom and rule.signal.record not in seen:
            seen.add(rule.signal.record)
            records.append({"record": rule.signal.record, "expr": rule.signal.expr})
        alerts += compile_alerts(rule, urls[alert_name(rule.name)])
    groups: list[dict[str, Any]] = [{"name": GROUP, "rules": records + [a.body for a in alerts]}]
    for slo in config.slos:
        if slo.enabled:
            rules = recording_rules(slo) + slo_alerts(slo, urls[slo_alert_name(slo)])
            groups.append({"name": f"atlas.slo.{slo.name}", "rules": rules})
    return groups, alerts
