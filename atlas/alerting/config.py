"""The models of `config/alerting.yaml` (thresholds) and `config/monitoring.yaml` (intervals, channels).

alerting.yaml is the one place thresholds live (DESIGN.md): the Prometheus rule compiler, the
Alertmanager routing and the monitoring agent all read `AlertingConfig`. Built-in alert names are
a closed set (`SIGNALS`): each names one signal Atlas knows how to measure, so a typo is an error
with a did-you-mean rather than an alert that silently never fires. An alert with its own `expr:`
(PromQL with a `{threshold}` placeholder) is a custom alert and may have any lower_snake_case name.

Both loaders return the model and every finding (file, line, key); `read_*` raise ConfigError.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from atlas.alerting.signals import SIGNALS, UNIT_FORMAT, Signal
from atlas.alerting.slo import SLO, load_slos
from atlas.config.loader import Finding
from atlas.config.yamlcheck import YamlChecker
from atlas.errors import ConfigError
from atlas.settings import bytes_in  # the settings' size syntax: 2GiB, 512MB, 1048576

SEVERITIES = ("warning", "critical")
CHANNEL_KINDS = ("email", "webhook", "slack")
_ALERT_KEYS = (
    "warning",
    "critical",
    "for",
    "keep_firing_for",
    "cooldown",
    "enabled",
    "summary",
    "description",
    "runbook_url",
    "labels",
    "channels",
)
_CUSTOM_KEYS = (*_ALERT_KEYS, "expr", "unit", "direction")
_DEFAULT_KEYS = ("for", "keep_firing_for", "cooldown", "channels")
_NAME = r"[a-z][a-z0-9_]{0,62}"
_LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
# Labels the compiler sets itself: an alert's own `labels:` may not override them.
RESERVED_LABELS = ("alertname", "severity", "channels", "signal")
_TOP_KEYS = ("version", "defaults", "alerts", "slos", "router", "grafana")
ROUTER_URL = "http://127.0.0.1:9111/v1/alertmanager"
# Where operators open the Atlas dashboards: each alert's dashboard_url annotation starts here.
# Grafana's own default address; set `grafana: {url: ...}` in alerting.yaml for a real host.
GRAFANA_URL = "http://localhost:3000"
ROUTER_CREDENTIALS_FILE = "/etc/alertmanager/atlas-alert-router-token"


@dataclass(frozen=True)
class AlertRule:
    name: str
    signal: Signal
    thresholds: dict[str, float]  # severity -> threshold
    for_seconds: float
    cooldown_seconds: float
    enabled: bool
    line: int
    keep_firing_for_seconds: float = 0.0
    summary: str | None = None
    description: str | None = None
    runbook_url: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    channels: tuple[str, ...] = ()  # empty: every enabled channel of monitoring.yaml
    custom: bool = False  # `expr` given in alerting.yaml rather than a built-in signal


@dataclass(frozen=True)
class Router:
    """Where Alertmanager delivers: the Atlas alert router's webhook and the bearer token file."""

    url: str = ROUTER_URL
    credentials_file: str = ROUTER_CREDENTIALS_FILE


@dataclass(frozen=True)
class AlertingConfig:
    path: Path
    rules: tuple[AlertRule, ...]
    slos: tuple[SLO, ...] = ()
    router: Router = Router()
    default_cooldown_seconds: float = 1800.0
    grafana_url: str = GRAFANA_URL


def _threshold(check: YamlChecker, node: yaml.Node, where: str, signal: Signal) -> float | None:
    if signal.unit == "seconds":
        return check.duration(node, where)
    if signal.unit == "bytes":
        value = check.value(node)
        try:
            return float(bytes_in(0, 1 << 60)(str(value)))
        except ValueError as exc:
            check.error(node, where, str(exc))
            return None
    return check.number(node, where, 0, signal.hi)


def load_alerting(path: Path) -> tuple[AlertingConfig | None, list[Finding]]:
    """The alerting model of `path` and every finding (the model is None when there are errors).

    Two shapes load: the operations guide's (`alerts:` with `warning`, `critical`, `cooldown` in
    seconds or durations, no `version:`) and version 1, which adds `defaults:`, `slos:`, `router:`
    and the optional per-alert keys."""
    check = YamlChecker(path)
    root = check.load()
    top = check.mapping(root, "", _TOP_KEYS) if root is not None else None
    rules: list[AlertRule] = []
    slos: list[SLO] = []
    router = Router()
    grafana_url: str | None = GRAFANA_URL
    defaults: dict[str, Any] = {"for": 300.0, "cooldown": 1800.0, "keep_firing_for": 0.0, "channels": ()}
    if top is not None:
        if "version" in top and check.value(top["version"]) != 1:
            # No version at all is the operations guide's file: version 1 without the header.
            check.error(top["version"], "version", f"expected 1, got {top['version'].value!r}")
        if "defaults" in top and (d := check.mapping(top["defaults"], "defaults", _DEFAULT_KEYS)):
            for key, node in d.items():
                if key == "channels":
                    defaults[key] = _channels(check, node, "defaults.channels") or ()
                else:
                    value = check.duration(node, f"defaults.{key}")
                    defaults[key] = defaults[key] if value is None else value
        alerts = check.mapping(top["alerts"], "alerts") if "alerts" in top else None
        if "alerts" not in top:
            check.error(root, "alerts", "missing: the thresholds go under alerts:")
        for name, node in (alerts or {}).items():
            rule = _rule(check, name, node, defaults)
            if rule is not None:
                rules.append(rule)
        if "slos" in top:
            slos = load_slos(check, top["slos"])
        if "router" in top:
            router = _router(check, top["router"]) or router
        grafana = check.mapping(top["grafana"], "grafana", ("url",)) if "grafana" in top else None
        if grafana and "url" in grafana:
            grafana_url = check.text(
                grafana["url"], "grafana.url", r"https?://\S+", "an http:// or https:// URL"
            )
    ok = not [f for f in check.findings if f.severity == "error"]
    config = AlertingConfig(
        path, tuple(rules), tuple(slos), router, defaults["cooldown"], grafana_url or GRAFANA_URL
    )
    return (config if ok else None), check.findings


def _version(check: YamlChecker, top: dict[str, yaml.Node], root: yaml.Node | None) -> None:
    if "version" not in top:
        check.error(root, "version", "missing: expected version: 1")
    elif check.value(top["version"]) != 1:
        check.error(top["version"], "version", f"expected 1, got {top['version'].value!r}")


def _channels(check: YamlChecker, node: yaml.Node, where: str) -> tuple[str, ...] | None:
    kinds = "|".join(CHANNEL_KINDS)
    names = check.text_list(node, where, kinds, f"channels ({', '.join(CHANNEL_KINDS)})")
    return None if names is None else tuple(dict.fromkeys(names))


def _router(check: YamlChecker, node: yaml.Node) -> Router | None:
    body = check.mapping(node, "router", ("url", "credentials_file"))
    if body is None:
        return None
    url: str | None = ROUTER_URL
    cred: str | None = ROUTER_CREDENTIALS_FILE
    if "url" in body:
        url = check.text(body["url"], "router.url", r"https?://\S+", "an http:// or https:// URL")
    if "credentials_file" in body:
        cred = check.text(body["credentials_file"], "router.credentials_file", r"/\S+", "an absolute path")
    return None if url is None or cred is None else Router(url, cred)


def _custom_signal(check: YamlChecker, where: str, body: dict[str, yaml.Node]) -> Signal | None:
    expr = check.text(body["expr"], f"{where}.expr")
    if expr is None:
        return None
    if "{threshold}" not in expr:
        check.error(body["expr"], f"{where}.expr", "must contain {threshold} where the threshold goes")
        return None
    unit: str | None = "count"
    if "unit" in body:
        unit = check.text(
            body["unit"], f"{where}.unit", "|".join(UNIT_FORMAT), f"one of {', '.join(UNIT_FORMAT)}"
        )
    direction: str | None = "above"
    if "direction" in body:
        direction = check.text(body["direction"], f"{where}.direction", "above|below", "above or below")
    if unit is None or direction is None:
        return None
    name = where.split(".")[-1]
    return Signal(
        unit, direction, "Custom alert from alerting.yaml.", expr=expr, title=name.replace("_", " ")
    )


def _rule(check: YamlChecker, name: str, node: yaml.Node, defaults: dict[str, Any]) -> AlertRule | None:
    where = f"alerts.{name}"
    custom = isinstance(node, yaml.MappingNode) and any(k.value == "expr" for k, _ in node.value)
    if not custom and name not in SIGNALS:
        close = difflib.get_close_matches(name, list(SIGNALS), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else "not a signal Atlas measures"
        check.error(node, where, f"unknown key ({hint}); a custom alert needs expr:")
        return None
    if custom and not re.fullmatch(_NAME, name):
        check.error(node, where, "a custom alert's name must be lower_snake_case")
    body = check.mapping(node, where, _CUSTOM_KEYS if custom else _ALERT_KEYS)
    if body is None:
        return None
    signal = _custom_signal(check, where, body) if custom else SIGNALS[name]
    if signal is None:
        return None
    thresholds: dict[str, float] = {}
    for severity in SEVERITIES:
        if severity in body:
            value = _threshold(check, body[severity], f"{where}.{severity}", signal)
            if value is not None:
                thresholds[severity] = value
    if not any(s in body for s in SEVERITIES):
        check.error(node, where, "expected a warning and/or a critical threshold")
    if len(thresholds) == 2:
        warn, crit = thresholds["warning"], thresholds["critical"]
        worse = crit > warn if signal.direction == "above" else crit < warn
        if not worse:
            op, bad = (">", "<=") if signal.direction == "above" else ("<", ">=")
            check.error(
                body["critical"], f"{where}.critical", f"must be {op} warning (got {crit:g} {bad} {warn:g})"
            )

    def duration(key: str) -> float | None:
        return check.duration(body[key], f"{where}.{key}") if key in body else float(defaults[key])

    def text(key: str, pattern: str | None = None, expected: str = "") -> str | None:
        return check.text(body[key], f"{where}.{key}", pattern, expected) if key in body else None

    for_s, cool, keep = duration("for"), duration("cooldown"), duration("keep_firing_for")
    enabled = check.boolean(body["enabled"], f"{where}.enabled") if "enabled" in body else True
    channels: tuple[str, ...] | None = defaults["channels"]
    if "channels" in body:
        channels = _channels(check, body["channels"], f"{where}.channels")
    labels = _labels(check, body["labels"], f"{where}.labels") if "labels" in body else ()
    if cool is not None and cool <= 0:
        check.error(body["cooldown"], f"{where}.cooldown", "must be more than 0s")
    summary, description = text("summary"), text("description")
    runbook = text("runbook_url", r"(https?://|docs/)\S+", "an http(s):// URL or a docs/ path")
    if for_s is None or cool is None or keep is None or enabled is None or channels is None or labels is None:
        return None
    return AlertRule(
        name,
        signal,
        thresholds,
        for_s,
        cool,
        enabled,
        check.line(node),
        keep_firing_for_seconds=keep,
        summary=summary,
        description=description,
        runbook_url=runbook,
        labels=labels,
        channels=channels,
        custom=custom,
    )


def _labels(check: YamlChecker, node: yaml.Node, where: str) -> tuple[tuple[str, str], ...] | None:
    body = check.mapping(node, where)
    if body is None:
        return None
    out: list[tuple[str, str]] = []
    for key, value_node in body.items():
        if not re.fullmatch(_LABEL, key) or key in RESERVED_LABELS:
            reserved = ", ".join(RESERVED_LABELS)
            check.error(
                value_node, f"{where}.{key}", f"not a label name you may set ({reserved} are Atlas's)"
            )
            continue
        value = check.value(value_node)
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            check.error(value_node, f"{where}.{key}", "expected a string")
            continue
        out.append((key, str(value)))
    return tuple(out) if len(out) == len(body) else None


# -- monitoring.yaml -----------------------------------------------------------------------------

_URL = r"https?://\S+"
_EMAIL = r"[^@\s]+@[^@\s]+"
_CHANNELS: dict[str, dict[str, str]] = {
    # key -> kind; "secret" values name an entry of CONFIG_DIR/<env>.secrets
    "email": {
        "enabled": "bool",
        "smtp_server": "text",
        "smtp_port": "port",
        "starttls": "bool",
        "username": "text",
        "password_secret": "secret",
        "from": "email",
        "to": "emails",
        "min_severity": "severity",
        "tls": "bool",  # implicit TLS (port 465); starttls: false and tls: false = plain (local relay)
        "send_resolved": "bool",
        "timeout": "duration",
        "concurrency": "count",  # SMTP sessions at once (default ATLAS_ROUTER_CONCURRENCY)
    },
    "webhook": {
        "enabled": "bool",
        "url": "url",
        "headers": "headers",
        "bearer_token_secret": "secret",
        "min_severity": "severity",
        "hmac_secret": "secret",  # signs the body: X-Atlas-Signature: sha256=<hex HMAC-SHA256>
        "send_resolved": "bool",
        "timeout": "duration",
        "concurrency": "count",  # requests at once (default ATLAS_ROUTER_CONCURRENCY)
    },
    "slack": {
        "enabled": "bool",
        "webhook_url_secret": "secret",
        "channel": "text",
        "min_severity": "severity",
        "send_resolved": "bool",
        "timeout": "duration",
    },
}
_REQUIRED = {"email": ("smtp_server", "from", "to"), "webhook": ("url",), "slack": ("webhook_url_secret",)}
_PLAINTEXT = {
    "password": "password_secret",
    "webhook_url": "webhook_url_secret",
    "token": "bearer_token_secret",
}
INTERVALS = ("scrape", "health_check", "evaluation")


@dataclass(frozen=True)
class Channel:
    kind: str
    enabled: bool
    options: dict[str, Any]  # everything but secrets
    secrets: dict[str, str]  # option -> secret name
    min_severity: str


@dataclass(frozen=True)
class MonitoringConfig:
    path: Path
    intervals: dict[str, float]  # seconds
    channels: tuple[Channel, ...]


def load_monitoring(
    path: Path, secret_names: Collection[str] | None = None
) -> tuple[MonitoringConfig | None, list[Finding]]:
    """The monitoring model and every finding. `secret_names`, when known, are the secrets that
    exist: an enabled channel naming a missing one is an error (a disabled one is not checked)."""
    check = YamlChecker(path)
    root = check.load()
    top = check.mapping(root, "", ("version", "intervals", "notifications")) if root is not None else None
    intervals = {"scrape": 15.0, "health_check": 30.0, "evaluation": 15.0}
    channels: list[Channel] = []
    if top is not None:
        _version(check, top, root)
        if "intervals" in top and (body := check.mapping(top["intervals"], "intervals", INTERVALS)):
            for key, node in body.items():
                seconds = check.duration(node, f"intervals.{key}")
                if seconds is not None and seconds <= 0:
                    check.error(node, f"intervals.{key}", "must be more than 0s")
                intervals[key] = seconds or intervals[key]
        if "notifications" in top:
            for kind, node in (check.mapping(top["notifications"], "notifications", _CHANNELS) or {}).items():
                channel = _channel(check, kind, node, secret_names)
                if channel is not None:
                    channels.append(channel)
    ok = not [f for f in check.findings if f.severity == "error"]
    return (MonitoringConfig(path, intervals, tuple(channels)) if ok else None), check.findings


def _channel(
    check: YamlChecker, kind: str, node: yaml.Node, secret_names: Collection[str] | None
) -> Channel | None:
    where = f"notifications.{kind}"
    schema = _CHANNELS[kind]
    body = check.mapping(node, where, [*schema, *_PLAINTEXT])
    if body is None:
        return None
    enabled = check.boolean(body["enabled"], f"{where}.enabled") if "enabled" in body else True
    options: dict[str, Any] = {}
    secrets: dict[str, str] = {}
    for key, value_node in body.items():
        at = f"{where}.{key}"
        if key in _PLAINTEXT:
            check.error(
                value_node,
                at,
                f"secrets do not belong in monitoring.yaml: store the value with `atlas-ops config secrets "
                f"set NAME` and name it here with {_PLAINTEXT[key]}: NAME",
            )
            continue
        kind_of = schema[key]
        if kind_of == "secret":
            name = check.text(value_node, at, r"[a-z][a-z0-9_]{0,63}", "a secret name like smtp_password")
            if name is not None:
                secrets[key] = name
                if enabled and secret_names is not None and name not in secret_names:
                    check.error(
                        value_node,
                        at,
                        f"no secret {name!r} in the secrets file (atlas-ops config secrets set {name})",
                    )
        elif key != "enabled":
            options[key] = _option(check, kind_of, value_node, at)
    for key in _REQUIRED[kind]:
        if key not in body:
            check.error(node, f"{where}.{key}", "missing")
    if enabled is None or None in options.values():
        return None
    severity = options.pop("min_severity", "warning")
    return Channel(kind, enabled, options, secrets, severity)


def _option(check: YamlChecker, kind_of: str, node: yaml.Node, at: str) -> Any:
    if kind_of == "bool":
        return check.boolean(node, at)
    if kind_of == "duration":
        seconds = check.duration(node, at)
        if seconds is not None and seconds <= 0:
            check.error(node, at, "must be more than 0s")
            return None
        return seconds
    if kind_of == "port":
        value = check.number(node, at, 1, 65535)
        return int(value) if value is not None else None
    if kind_of == "count":
        value = check.number(node, at, 1, 256)
        if value is not None and not value.is_integer():
            check.error(node, at, f"expected a whole number 1-256, got {value:g}")
            return None
        return int(value) if value is not None else None
    if kind_of == "url":
        return check.text(node, at, _URL, "an http:// or https:// URL")
    if kind_of == "email":
        return check.text(node, at, _EMAIL, "an email address")
    if kind_of == "emails":
        return check.text_list(node, at, _EMAIL, "email addresses")
    if kind_of == "severity":
        return check.text(node, at, "|".join(SEVERITIES), f"one of {', '.join(SEVERITIES)}")
    if kind_of == "headers":
        body = check.mapping(node, at)
        if body is None:
            return None
        headers = {k: check.text(v, f"{at}.{k}") for k, v in body.items()}
        return None if None in headers.values() else headers
    return check.text(node, at)


def read_alerting(path: Path) -> AlertingConfig:
    """The alerting model; raises ConfigError listing every error (file:line: key: message)."""
    config, findings = load_alerting(path)
    if config is None:
        raise ConfigError("\n".join(str(f) for f in findings if f.severity == "error"))
    return config


def read_monitoring(path: Path, secret_names: Collection[str] | None = None) -> MonitoringConfig:
    """The monitoring model; raises ConfigError listing every error (file:line: key: message)."""
    config, findings = load_monitoring(path, secret_names)
    if config is None:
        raise ConfigError("\n".join(str(f) for f in findings if f.severity == "error"))
    return config
