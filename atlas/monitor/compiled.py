"""alerting.yaml compiled for the agent: the same alerts atlas.rules.yml holds, as AgentAlerts.

`agent_alerts(config)` walks the compiler's own output (atlas.alerting.rules.rule_groups and
slo_alerts), so names, severities, thresholds, `for`, keep_firing_for, labels and annotations are
the compiler's; only the condition comes from the query tree instead of the PromQL text.
"""

from __future__ import annotations

from dataclasses import dataclass

from atlas.alerting.config import AlertingConfig
from atlas.alerting.queries import QUERIES
from atlas.alerting.rules import rule_groups, slo_alerts
from atlas.alerting.slo import BURN_ALERTS, alert_query
from atlas.alerting.slo import alert_name as slo_alert_name
from atlas.dashboards.alertpanels import dashboard_urls
from atlas.monitor.evaluate import AgentAlert


@dataclass(frozen=True)
class Meta:
    """What a notification carries besides the instance's own labels."""

    labels: dict[str, str]
    annotations: dict[str, str]


@dataclass(frozen=True)
class AgentRules:
    alerts: list[AgentAlert]
    meta: dict[tuple[str, str], Meta]
    needs_prometheus: list[str]  # custom `expr:` alerts: free PromQL the agent does not evaluate


def agent_alerts(config: AlertingConfig) -> AgentRules:
    _groups, compiled = rule_groups(config)
    alerts: list[AgentAlert] = []
    meta: dict[tuple[str, str], Meta] = {}
    skipped: set[str] = set()
    for a in compiled:
        rule = a.rule
        if rule.custom or rule.name not in QUERIES:
            skipped.add(rule.name)
            continue
        timing = {
            "for_seconds": rule.for_seconds,
            "keep_firing_for_seconds": rule.keep_firing_for_seconds,
            "cooldown_seconds": rule.cooldown_seconds,
        }
        alerts.append(
            AgentAlert.threshold(
                a.name, a.severity, QUERIES[rule.name], rule.signal.comparison, a.threshold, **timing
            )
        )
        meta[(a.name, a.severity)] = Meta(a.labels, a.body["annotations"])
    urls = dashboard_urls(config)
    for slo in config.slos:
        if not slo.enabled:
            continue
        burn = slo_alerts(slo, urls[slo_alert_name(slo)])
        for body, (severity, _sloth, pairs) in zip(burn, BURN_ALERTS, strict=True):
            # SLO alerts have no `for` (Sloth's shape); the long window is their patience.
            alerts.append(
                AgentAlert(
                    body["alert"],
                    severity,
                    alert_query(slo, pairs),
                    0.0,
                    0.0,
                    config.default_cooldown_seconds,
                )
            )
            meta[(body["alert"], severity)] = Meta(body["labels"], body["annotations"])
    return AgentRules(alerts, meta, sorted(skipped))
