"""Per-alert panels, and the panel each compiled alert links to.

Each threshold alert compiled from config/alerting.yaml gets a panel on the alerts dashboard
plotting the series its rule compares (the signal's recording rule), with the warning and critical
thresholds drawn as lines. The rule compiler (atlas.alerting.rules) puts each alert's panel URL in
its `dashboard_url` annotation (`dashboard_urls()`), so a page leads straight to the picture:

- a built-in signal's alert -> its own panel (ids from FIRST_ALERT_PANEL_ID, in alerting.yaml order);
- an SLO's burn-rate alert -> the SLO burn-rate panel;
- a custom alert (its own `expr:`, no recorded series to plot) -> the firing-alerts panel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from atlas.alerting.config import AlertingConfig, read_alerting
from atlas.alerting.signals import alert_name
from atlas.alerting.slo import alert_name as slo_alert_name
from atlas.dashboards.model import Panel, Query, Threshold

ALERTS_UID = "atlas-alerts"
ALERTS_TITLE = "Atlas alerts"
# Fixed ids for the panels alerts link to, so a URL in a delivered page keeps pointing at the same
# panel while the panels around it change. General panels take ids from their position (1, 2, ...).
FIRING_PANEL_ID = 1
SLO_BUDGET_PANEL_ID = 50
SLO_BURN_PANEL_ID = 51
FIRST_ALERT_PANEL_ID = 100
GRAFANA_UNITS = {"percent": "percent", "count": "short", "seconds": "s", "bytes": "bytes"}


@dataclass(frozen=True)
class AlertDefinition:
    alert: str  # AtlasQueueBacklog
    signal: str  # queue_backlog
    expr: str  # the series the rule compares with its thresholds (the recording rule's name)
    unit: str  # a Grafana unit id
    thresholds: dict[str, float]  # severity -> value
    description: str


def definitions(config: AlertingConfig) -> list[AlertDefinition]:
    """The enabled built-in alerts of `config` with their signal's recorded series, in file order."""
    return [
        AlertDefinition(
            alert=alert_name(rule.name),
            signal=rule.name,
            expr=rule.signal.record,
            unit=GRAFANA_UNITS.get(rule.signal.unit, "short"),
            thresholds=dict(rule.thresholds),
            description=rule.signal.doc,
        )
        for rule in config.rules
        if rule.enabled and rule.signal.record and not rule.custom
    ]


def alert_definitions(config_dir: Path) -> list[AlertDefinition]:
    """`definitions()` of `config_dir/alerting.yaml`. Raises ConfigError for a bad alerting.yaml."""
    return definitions(read_alerting(config_dir / "alerting.yaml"))


def alert_panels(found: list[AlertDefinition]) -> list[Panel]:
    return [
        Panel(
            f"{d.alert}: {d.signal}",
            f"{d.description} The lines are alerting.yaml's thresholds "
            f"({', '.join(f'{k} {v:g}' for k, v in sorted(d.thresholds.items()))}); the alert "
            "links here through its dashboard_url annotation.",
            d.unit,
            (Query(d.expr, "{{instance}}{{job}}"),),
            thresholds=tuple(
                Threshold(v, "orange" if k == "warning" else "red", k)
                for k, v in sorted(d.thresholds.items())
            ),
            width=8,
            height=7,
            panel_id=FIRST_ALERT_PANEL_ID + index,
        )
        for index, d in enumerate(found)
    ]


def view_panel_url(grafana_url: str, panel_id: int) -> str:
    """Grafana's URL of one panel of the alerts dashboard shown alone (viewPanel)."""
    slug = re.sub(r"[^a-z0-9]+", "-", ALERTS_TITLE.lower()).strip("-")
    return f"{grafana_url.rstrip('/')}/d/{ALERTS_UID}/{slug}?viewPanel={panel_id}"


def panel_url(found: list[AlertDefinition], alert: str, grafana_url: str) -> str:
    """The URL of `alert`'s own panel. Raises ValueError when `alert` has none."""
    index = [d.alert for d in found].index(alert)
    return view_panel_url(grafana_url, FIRST_ALERT_PANEL_ID + index)


def dashboard_urls(config: AlertingConfig) -> dict[str, str]:
    """Every enabled alert's name -> the URL of the panel its dashboard_url annotation names."""
    found = definitions(config)
    urls = {d.alert: panel_url(found, d.alert, config.grafana_url) for d in found}
    for rule in config.rules:
        if rule.enabled and alert_name(rule.name) not in urls:
            urls[alert_name(rule.name)] = view_panel_url(config.grafana_url, FIRING_PANEL_ID)
    for slo in config.slos:
        if slo.enabled:
            urls[slo_alert_name(slo)] = view_panel_url(config.grafana_url, SLO_BURN_PANEL_ID)
    return urls
