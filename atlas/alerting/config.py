"""The models of `config/alerting.yaml` (thresholds) and `config/monitoring.yaml` (intervals, channels).

alerting.yaml is the one place thresholds live (DESIGN.md): the Prometheus rule compiler, the
Alertmanager routing and the monitoring agent all read `AlertingConfig`. Alert names are a closed
set (`SIGNALS`): each names one signal Atlas knows how to measure, so a typo is an error with a
did-you-mean rather than an alert that silently never fires.

Both loaders return the model and every finding (file, line, key); `read_*` raise ConfigError.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from atlas.config.loader import Finding
from atlas.config.yamlcheck import YamlChecker
from atlas.errors import ConfigError
from atlas.settings import bytes_in  # the settings' size syntax: 2GiB, 512MB, 1048576

SEVERITIES = ("warning", "critical")


@dataclass(frozen=True)
class Signal:
    """What an alert measures: its unit, which way is bad, and the allowed threshold range."""

    unit: str  # percent | count | seconds | bytes
    direction: str  # above | below: the alert fires when the value is above (below) a threshold
    doc: str
    hi: float = 1e15


SIGNALS: dict[str, Signal] = {
    "queue_backlog": Signal("count", "above", "Items queued and due (atlas_queue_items{state=queued})."),
    "oldest_queued_age": Signal("seconds", "above", "Age of the oldest queued item."),
    "dead_letters": Signal("count", "above", "Items in the dead-letter queue."),
    "api_error_rate": Signal("percent", "above", "Share of API requests answered 5xx.", 100),
    "api_latency_p99": Signal("seconds", "above", "99th percentile API request duration."),
    "engine_heartbeat_age": Signal("seconds", "above", "Time since the engine last renewed its heartbeat."),
    "cpu_usage": Signal("percent", "above", "CPU busy, all cores.", 100),
    "memory_usage": Signal("percent", "above", "Memory in use (MemAvailable based).", 100),
    "atlas_memory": Signal(
        "percent", "above", "Atlas processes' RSS as a share of ATLAS_MEMORY_BUDGET_BYTES.", 1000
    ),
    "disk_usage": Signal("percent", "above", "Used space on the data directory's filesystem.", 100),
    "disk_free": Signal("bytes", "below", "Free bytes on the data directory's filesystem."),
    "backup_age": Signal("seconds", "above", "Time since the last successful backup."),
}
_ALERT_KEYS = ("warning", "critical", "for", "cooldown", "enabled")


@dataclass(frozen=True)
class AlertRule:
    name: str
    signal: Signal
    thresholds: dict[str, float]  # severity -> threshold
    for_seconds: float
    cooldown_seconds: float
    enabled: bool
    line: int


@dataclass(frozen=True)
class AlertingConfig:
    path: Path
    rules: tuple[AlertRule, ...]


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
    """The alerting model of `path` and every finding (the model is None when there are errors)."""
    check = YamlChecker(path)
    root = check.load()
    top = check.mapping(root, "", ("version", "defaults", "alerts")) if root is not None else None
    rules: list[AlertRule] = []
    if top is not None:
        _version(check, top, root)
        defaults = {"for": 300.0, "cooldown": 1800.0}
        if "defaults" in top and (d := check.mapping(top["defaults"], "defaults", ("for", "cooldown"))):
            for key, node in d.items():
                defaults[key] = check.duration(node, f"defaults.{key}") or defaults[key]
        alerts = check.mapping(top["alerts"], "alerts", SIGNALS) if "alerts" in top else None
        if "alerts" not in top:
            check.error(root, "alerts", "missing: the thresholds go under alerts:")
        for name, node in (alerts or {}).items():
            rule = _rule(check, name, node, SIGNALS[name], defaults)
            if rule is not None:
                rules.append(rule)
    ok = not [f for f in check.findings if f.severity == "error"]
    return (AlertingConfig(path, tuple(rules)) if ok else None), check.findings


def _version(check: YamlChecker, top: dict[str, yaml.Node], root: yaml.Node | None) -> None:
    if "version" not in top:
        check.error(root, "version", "missing: expected version: 1")
    elif check.value(top["version"]) != 1:
        check.error(top["version"], "version", f"expected 1, got {top['version'].value!r}")


def _rule(
    check: YamlChecker, name: str, node: yaml.Node, signal: Signal, defaults: dict[str, float]
) -> AlertRule | None:
    where = f"alerts.{name}"
    body = check.mapping(node, where, _ALERT_KEYS)
    if body is None:
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
    for_s = check.duration(body["for"], f"{where}.for") if "for" in body else defaults["for"]
    cool = (
        check.duration(body["cooldown"], f"{where}.cooldown") if "cooldown" in body else defaults["cooldown"]
    )
    enabled = check.boolean(body["enabled"], f"{where}.enabled") if "enabled" in body else True
    if for_s is None or cool is None or enabled is None:
        return None
    return AlertRule(name, signal, thresholds, for_s, cool, enabled, check.line(node))


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
