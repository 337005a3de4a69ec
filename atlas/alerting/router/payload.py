"""Alertmanager webhook payloads (version 4): validation and the normalised notification.

Alertmanager's webhook body is documented at
https://prometheus.io/docs/alerting/latest/configuration/#webhook_config; every field the router
reads is checked here so a bad body gets a 400 that names the field (`alerts[2].fingerprint: ...`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from atlas.errors import AtlasError

STATUSES = ("firing", "resolved")
_MAX_ALERTS = 10_000  # far above Alertmanager's own group sizes; bounds the work one body can cause


class PayloadError(AtlasError):
    """The webhook body is not an Alertmanager version 4 payload."""


def _field(body: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str = "") -> Any:
    at = f"{where}{key}"
    if key not in body:
        raise PayloadError(f"{at}: missing")
    value = body[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        expected = {"dict": "an object", "str": "a string", "list": "a list", "int": "an integer"}
        raise PayloadError(f"{at}: expected {expected.get(names, names)}, got {type(value).__name__}")
    return value


def _labels(body: dict[str, Any], key: str, where: str = "", required: bool = True) -> dict[str, str]:
    if key not in body and not required:
        return {}
    value = _field(body, key, dict, where)
    for name, text in value.items():
        if not isinstance(text, str):
            raise PayloadError(f"{where}{key}.{name}: expected a string, got {type(text).__name__}")
    return dict(value)


def _status(body: dict[str, Any], where: str) -> str:
    status = _field(body, "status", str, where)
    if status not in STATUSES:
        raise PayloadError(f"{where}status: expected firing or resolved, got {status!r}")
    return str(status)


@dataclass(frozen=True)
class Alert:
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    ends_at: str
    generator_url: str
    fingerprint: str

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": self.starts_at,
            "endsAt": self.ends_at,
            "generatorURL": self.generator_url,
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True)
class Notification:
    group_key: str
    status: str
    receiver: str
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    common_annotations: dict[str, str]
    external_url: str
    truncated_alerts: int
    alerts: tuple[Alert, ...]

    @property
    def dedupe_key(self) -> str:
        """Same for every copy of one notification: both members of an HA pair and Alertmanager's
        own retries send the same group key, status and alerts (fingerprint, startsAt)."""
        pairs = sorted({(a.fingerprint, a.starts_at) for a in self.alerts})
        text = "\x1f".join([self.group_key, self.status, *(f"{f}\x1e{s}" for f, s in pairs)])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": "4",
            "groupKey": self.group_key,
            "status": self.status,
            "receiver": self.receiver,
            "groupLabels": self.group_labels,
            "commonLabels": self.common_labels,
            "commonAnnotations": self.common_annotations,
            "externalURL": self.external_url,
            "truncatedAlerts": self.truncated_alerts,
            "alerts": [a.as_dict() for a in self.alerts],
        }


def _alert(body: Any, where: str) -> Alert:
    if not isinstance(body, dict):
        raise PayloadError(f"{where.rstrip('.')}: expected an object, got {type(body).__name__}")
    fingerprint = _field(body, "fingerprint", str, where)
    if not fingerprint.strip():
        raise PayloadError(f"{where}fingerprint: must not be empty")
    starts_at = _field(body, "startsAt", str, where)
    labels = _labels(body, "labels", where)
    return Alert(
        status=_status(body, where),
        labels=labels,
        annotations=_labels(body, "annotations", where, required=False),
        starts_at=starts_at,
        ends_at=str(body.get("endsAt") or ""),
        generator_url=str(body.get("generatorURL") or ""),
        fingerprint=fingerprint,
    )


def parse_notification(body: Any) -> Notification:
    """The notification of a decoded webhook body; raises PayloadError naming the field at fault."""
    if not isinstance(body, dict):
        raise PayloadError(f"body: expected a JSON object, got {type(body).__name__}")
    version = _field(body, "version", str)
    if version != "4":
        raise PayloadError(f"version: expected '4' (Alertmanager webhook payload version), got {version!r}")
    group_key = _field(body, "groupKey", str)
    alerts = _field(body, "alerts", list)
    if not alerts:
        raise PayloadError("alerts: expected at least one alert")
    if len(alerts) > _MAX_ALERTS:
        raise PayloadError(f"alerts: at most {_MAX_ALERTS} alerts, got {len(alerts)}")
    truncated = body.get("truncatedAlerts", 0)
    if not isinstance(truncated, int) or isinstance(truncated, bool) or truncated < 0:
        raise PayloadError(f"truncatedAlerts: expected an integer >= 0, got {truncated!r}")
    external = body.get("externalURL", "")
    if not isinstance(external, str):
        raise PayloadError(f"externalURL: expected a string, got {type(external).__name__}")
    return Notification(
        group_key=group_key,
        status=_status(body, ""),
        receiver=_field(body, "receiver", str),
        group_labels=_labels(body, "groupLabels"),
        common_labels=_labels(body, "commonLabels"),
        common_annotations=_labels(body, "commonAnnotations"),
        external_url=external,
        truncated_alerts=truncated,
        alerts=tuple(_alert(a, f"alerts[{i}].") for i, a in enumerate(alerts)),
    )


def notification_from_dict(body: dict[str, Any]) -> Notification:
    """A notification stored by the outbox (already validated once) back as the model."""
    return parse_notification(body)
