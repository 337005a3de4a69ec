"""Per-alert panels: each alert compiled from config/alerting.yaml gets a panel plotting the series
its rule compares, with the warning and critical thresholds drawn as lines.

The alert definitions come from the rule compiler (`atlas.alerting.signals`: each signal's recording
rule), which is built on another branch. `alert_definitions()` is the one place that reads them: it
returns None while the compiler is absent, and the alerts dashboard then has no per-alert panels
(its description says so). When the compiler lands, this module needs no other change than what
its API turns out to be; the compiler calls `panel_url()` to put `dashboard_url` in each alert's
annotations.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atlas.dashboards.model import Panel, Query, Threshold

ALERTS_UID = "atlas-alerts"
# Per-alert panels get ids from here up, in alerting.yaml order, so a panel's URL is stable while
# the general panels above them change.
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


def alert_name(signal: str) -> str:
    """`disk_usage` -> `AtlasDiskUsage` (DESIGN.md's naming contract)."""
    return "Atlas" + "".join(part.capitalize() for part in signal.split("_"))


def alert_definitions(config_dir: Path) -> list[AlertDefinition] | None:
    """The enabled alerts of `config_dir/alerting.yaml` with their signal's recorded series, or None
    when the rule compiler (atlas.alerting.signals) is not installed. Raises ConfigError for a bad
    alerting.yaml."""
    try:
        importlib.import_module("atlas.alerting.signals")
    except ModuleNotFoundError:
        return None
    config: Any = importlib.import_module("atlas.alerting.config")
    alerting = config.read_alerting(config_dir / "alerting.yaml")
    found: list[AlertDefinition] = []
    for rule in alerting.rules:
        if not rule.enabled or not getattr(rule.signal, "record", ""):
            continue
        found.append(
            AlertDefinition(
                alert=alert_name(rule.name),
                signal=rule.name,
                expr=rule.signal.record,
                unit=GRAFANA_UNITS.get(rule.signal.unit, "short"),
                thresholds=dict(rule.thresholds),
                description=rule.signal.doc,
            )
        )
    return found


def alert_panels(definitions: list[AlertDefinition]) -> list[Panel]:
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
        for index, d in enumerate(definitions)
    ]


def panel_url(definitions: list[AlertDefinition], alert: str, grafana_url: str) -> str:
    """The URL of `alert`'s panel (Grafana's viewPanel), for the rule's dashboard_url annotation."""
    index = [d.alert for d in definitions].index(alert)
    slug = re.sub(r"[^a-z0-9]+", "-", "Atlas alerts".lower())
    return f"{grafana_url.rstrip('/')}/d/{ALERTS_UID}/{slug}?viewPanel={FIRST_ALERT_PANEL_ID + index}"
