"""A small typed builder for Grafana dashboards: panels, queries and the dashboard around them.

Why not grafana-foundation-sdk: on PyPI it is versioned with an epoch (`1769699998!10.1.0`) per
Grafana release, and the subset of the dashboard model Atlas uses (timeseries, stat, heatmap,
variables, annotations, links) is small enough to write down here, typed, in one page. The JSON is
Grafana's dashboard model at `SCHEMA_VERSION` (Grafana 10.4 / 11.x).

Panels are laid out left to right on Grafana's 24-column grid, wrapping to a new line when the next
one does not fit; `Dashboard.to_json()` gives the provisioning-ready JSON (no `id`, no `${DS_...}`
placeholders: panels name the `datasource` variable, which defaults to a fixed provisioned uid).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 39  # Grafana 10.4 / 11.0 dashboard schema
GRID_COLUMNS = 24
DATASOURCE_UID = "atlas-prometheus"  # provisioned by dashboards/provisioning/datasources.yaml
DATASOURCE_NAME = "Atlas Prometheus"
DS_REF = {"type": "prometheus", "uid": "${datasource}"}
# Every Atlas query selects by these two variables (multi-value regexes, "All" = any value).
SEL = 'job=~"$job",instance=~"$instance"'


@dataclass(frozen=True)
class Query:
    """One PromQL query of a panel; `legend` is Grafana's legendFormat (`{{label}}`)."""

    expr: str
    legend: str = ""
    exemplar: bool = False
    heatmap: bool = False  # Grafana's "format: heatmap" (buckets as rows, le-sorted)


@dataclass(frozen=True)
class Threshold:
    value: float
    color: str
    label: str = ""


@dataclass(frozen=True)
class Panel:
    """A data panel. `unit` is a Grafana unit id (s, percent, bytes, reqps, ops, short, ...)."""

    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    kind: str = "timeseries"  # timeseries | stat | heatmap
    width: int = 12
    height: int = 8
    thresholds: tuple[Threshold, ...] = ()
    stack: bool = False
    min: float | None = None
    max: float | None = None
    panel_id: int | None = None  # fixed id (per-alert panels, linked from alerts); else its position


@dataclass(frozen=True)
class Annotation:
    """A Prometheus-backed annotation: every non-zero sample of `expr` marks a time, or with
    `value_is_time` the sample's value (milliseconds) is the time marked."""

    name: str
    expr: str
    title: str
    color: str
    tags: str = ""  # comma-separated label names shown as tags
    value_is_time: bool = False


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    panels: list[Panel] = field(default_factory=list)
    annotations: tuple[Annotation, ...] = ()
    refresh: str = "30s"

    def layout(self) -> list[tuple[Panel, dict[str, int]]]:
        """Each panel with its gridPos: flowed left to right, wrapped at 24 columns."""
        placed: list[tuple[Panel, dict[str, int]]] = []
        x = y = row_height = 0
        for panel in self.panels:
            if not 0 < panel.width <= GRID_COLUMNS:
                raise ValueError(f"{self.uid}: panel {panel.title!r} width {panel.width} not in 1-24")
            if x + panel.width > GRID_COLUMNS:
                x, y, row_height = 0, y + row_height, 0
            placed.append((panel, {"h": panel.height, "w": panel.width, "x": x, "y": y}))
            x += panel.width
            row_height = max(row_height, panel.height)
        return placed

    def to_json(self, links: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["atlas"],
            "timezone": "utc",
            "editable": False,
            "graphTooltip": 1,  # shared crosshair: one time across all panels
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "refresh": self.refresh,
            "time": {"from": "now-6h", "to": "now"},
            "links": links,
            "templating": {"list": _variables()},
            "annotations": {"list": [_builtin_annotation(), *(_annotation(a) for a in self.annotations)]},
            "panels": [_panel(p.panel_id or i + 1, p, pos) for i, (p, pos) in enumerate(self.layout())],
        }


def _variables() -> list[dict[str, Any]]:
    def label_values(name: str, query: str) -> dict[str, Any]:
        return {
            "type": "query",
            "name": name,
            "label": name,
            "datasource": DS_REF,
            "definition": query,
            "query": {"query": query, "refId": f"{name}-values"},
            "refresh": 2,  # on time range change: new instances appear without a reload
            "multi": True,
            "includeAll": True,
            "allValue": ".+",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "sort": 1,
            "hide": 0,
        }

    return [
        {
            "type": "datasource",
            "name": "datasource",
            "label": "Data source",
            "query": "prometheus",
            "current": {"selected": True, "text": DATASOURCE_NAME, "value": DATASOURCE_UID},
            "hide": 0,
            "refresh": 1,
        },
        label_values("job", "label_values(up, job)"),
        label_values("instance", 'label_values(up{job=~"$job"}, instance)'),
    ]


def _builtin_annotation() -> dict[str, Any]:
    return {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }


def _annotation(a: Annotation) -> dict[str, Any]:
    return {
        "name": a.name,
        "datasource": DS_REF,
        "enable": True,
        "iconColor": a.color,
        "expr": a.expr,
        "step": "60s",
        "titleFormat": a.title,
        "tagKeys": a.tags,
        "useValueForTime": a.value_is_time,
    }


def _panel(panel_id: int, p: Panel, pos: dict[str, int]) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    steps += [{"color": t.color, "value": t.value} for t in p.thresholds]
    defaults: dict[str, Any] = {
        "unit": p.unit,
        "thresholds": {"mode": "absolute", "steps": steps},
    }
    if p.min is not None:
        defaults["min"] = p.min
    if p.max is not None:
        defaults["max"] = p.max
    if p.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "stacking": {"mode": "normal" if p.stack else "none", "group": "A"},
            "thresholdsStyle": {"mode": "line" if p.thresholds else "off"},
        }
        options: dict[str, Any] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    elif p.kind == "stat":
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    else:
        options = {"calculate": False, "yAxis": {"unit": p.unit}, "cellGap": 1}
    return {
        "id": panel_id,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DS_REF,
        "gridPos": pos,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DS_REF,
                "expr": q.expr,
                "legendFormat": q.legend or "__auto",
                "range": True,
                "exemplar": q.exemplar,
                "format": "heatmap" if q.heatmap else "time_series",
            }
            for i, q in enumerate(p.queries)
        ],
    }
