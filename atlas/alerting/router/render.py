"""Jinja2 templates for subjects and bodies, overridable from CONFIG_DIR/templates/router/.

A file there with a packaged template's name replaces it. Templates render with StrictUndefined,
and `check_templates` renders every one against a sample notification, so a typo fails
`atlas-ops config validate` instead of a delivery at 3 a.m.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from atlas.alerting.router.payload import Alert, Notification
from atlas.config.loader import Finding, Source

TEMPLATES = (
    "email_subject.txt.j2",
    "email_body.txt.j2",
    "email_body.html.j2",
    "slack_header.txt.j2",
    "slack_alert.md.j2",
)
OVERRIDE_DIR = Path("templates") / "router"


def _alert_view(alert: Alert) -> dict[str, Any]:
    return {
        "name": alert.name,
        "status": alert.status,
        "severity": alert.severity or "warning",
        "labels": alert.labels,
        "annotations": alert.annotations,
        "starts_at": alert.starts_at,
        "ends_at": alert.ends_at,
        "generator_url": alert.generator_url,
        "fingerprint": alert.fingerprint,
        "summary": alert.annotations.get("summary") or alert.annotations.get("description") or alert.name,
        "runbook_url": alert.annotations.get("runbook_url", ""),
        # The Grafana panel of the alert's signal (the compiler's dashboard_url annotation).
        "dashboard_url": alert.annotations.get("dashboard_url", ""),
    }


def context(n: Notification) -> dict[str, Any]:
    """What templates see. `group_values` and `extra_values` build Alertmanager's subject:
    `[FIRING:2] <group label values> (<common label values not in the group labels>)`."""
    extra = {k: v for k, v in sorted(n.common_labels.items()) if k not in n.group_labels}
    alerts = [_alert_view(a) for a in n.alerts]
    return {
        "status": n.status,
        "alerts": alerts,
        "firing": [a for a in alerts if a["status"] == "firing"],
        "resolved": [a for a in alerts if a["status"] == "resolved"],
        "group_labels": n.group_labels,
        "group_values": [v for _, v in sorted(n.group_labels.items())],
        "extra_values": list(extra.values()),
        "common_labels": n.common_labels,
        "common_annotations": n.common_annotations,
        "external_url": n.external_url,
        "receiver": n.receiver,
        "group_key": n.group_key,
        "truncated_alerts": n.truncated_alerts,
    }


SAMPLE = Notification(
    group_key='{}:{alertname="AtlasDiskUsage"}',
    status="firing",
    receiver="atlas-router",
    group_labels={"alertname": "AtlasDiskUsage"},
    common_labels={"alertname": "AtlasDiskUsage", "severity": "critical"},
    common_annotations={},
    external_url="http://alertmanager.example:9093",
    truncated_alerts=0,
    alerts=(
        Alert(
            "firing",
            {"alertname": "AtlasDiskUsage", "severity": "critical", "instance": "a:9110"},
            {
                "summary": "Disk 97% full",
                "runbook_url": "https://example.org/runbooks#disk",
                "dashboard_url": "http://localhost:3000/d/atlas-alerts/atlas-alerts?viewPanel=100",
            },
            "2026-01-01T00:00:00Z",
            "0001-01-01T00:00:00Z",
            "http://prometheus.example:9090/graph",
            "f1",
        ),
        Alert("resolved", {"alertname": "AtlasDiskUsage"}, {}, "2026-01-01T00:00:00Z", "", "", "f2"),
    ),
)


@dataclass
class Renderer:
    """The template environment of one config directory."""

    config_dir: Path

    def __post_init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(
                [
                    jinja2.FileSystemLoader(str(self.config_dir / OVERRIDE_DIR)),
                    jinja2.PackageLoader("atlas.alerting.router", "templates"),
                ]
            ),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
            # Templates are checked when the router starts (check_templates), so an override edited
            # later is not picked up unchecked; and auto_reload stats the template file on every
            # render, a measurable share of the email senders' CPU in bench/router.py's burst.
            auto_reload=False,
        )

    def warm(self) -> Renderer:
        """Compile every template now: compiled lazily, the first sends of a burst each compiled
        them again on every sender thread at once (py-spy on bench/router.py). Raises what
        loading raises (jinja2.TemplateError); the router checked them first."""
        for name in TEMPLATES:
            self.env.get_template(name)
        return self

    def render(self, name: str, notification: Notification, **extra: Any) -> str:
        return self.env.get_template(name).render(**context(notification), **extra)

    def render_alert(self, name: str, notification: Notification, alert: Alert) -> str:
        return self.env.get_template(name).render(**context(notification), alert=_alert_view(alert))


def check_templates(config_dir: Path) -> list[Finding]:
    """A finding (file:line, message) for every template that does not load or render."""
    renderer = Renderer(config_dir)
    findings = []
    for name in TEMPLATES:
        override = config_dir / OVERRIDE_DIR / name
        where = str(override) if override.exists() else f"atlas/alerting/router/templates/{name}"
        try:
            if name == "slack_alert.md.j2":
                renderer.render_alert(name, SAMPLE, SAMPLE.alerts[0])
            else:
                renderer.render(name, SAMPLE)
        except jinja2.TemplateSyntaxError as exc:
            findings.append(
                Finding(name, f"template syntax: {exc.message}", Source("file", where, exc.lineno))
            )
        except jinja2.TemplateError as exc:
            findings.append(Finding(name, f"template does not render: {exc}", Source("file", where)))
    if (config_dir / OVERRIDE_DIR).is_dir():
        for path in sorted((config_dir / OVERRIDE_DIR).iterdir()):
            if path.name not in TEMPLATES:
                findings.append(
                    Finding(
                        path.name,
                        f"not a router template (expected one of {', '.join(TEMPLATES)})",
                        Source("file", str(path)),
                        "warning",
                    )
                )
    return findings
