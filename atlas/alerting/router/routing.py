"""Which alerts of a notification go to which channel, before cooldowns (those need the outbox).

A channel gets an alert when the alert's severity reaches the channel's `min_severity`, the
alert's channels name the channel (or name none), and, for a resolved alert, the channel has
`send_resolved`. An alert's channels are its `channels` label (comma-separated; the rule compiler
sets it from alerting.yaml), else the `channels` of its alerting.yaml entry. Cooldowns come from
alerting.yaml by alert name (Atlas + the signal in CamelCase); alerts Atlas does not define have
none (Alertmanager's repeat_interval governs them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from atlas.alerting.config import SEVERITIES, AlertingConfig
from atlas.alerting.router.payload import Alert, Notification
from atlas.store.outbox import Candidate, Plan

# An alert without a severity label is treated as a warning; an unknown one (info, none) ranks
# below every min_severity a channel can have, so it is never sent.
_RANK = {s: i for i, s in enumerate(SEVERITIES)}


def alert_name(signal: str) -> str:
    """`disk_usage` -> `AtlasDiskUsage` (the rule compiler's naming, DESIGN.md)."""
    return "Atlas" + "".join(part.capitalize() for part in signal.split("_"))


@dataclass(frozen=True)
class ChannelPolicy:
    name: str  # the channel kind in monitoring.yaml: email | webhook | slack
    min_severity: str = "warning"
    send_resolved: bool = True


@dataclass(frozen=True)
class AlertPolicy:
    cooldown_seconds: float = 0.0
    channels: tuple[str, ...] | None = None


def alert_policies(config: AlertingConfig | None) -> dict[str, AlertPolicy]:
    if config is None:
        return {}
    # `channels` arrives with the rule compiler (issue 11): empty or absent = every channel.
    return {
        alert_name(r.name): AlertPolicy(r.cooldown_seconds, tuple(getattr(r, "channels", ()) or ()) or None)
        for r in config.rules
    }


def _channels(alert: Alert, policy: AlertPolicy) -> tuple[str, ...] | None:
    label = alert.labels.get("channels", "")
    if label.strip():
        return tuple(c.strip() for c in label.split(",") if c.strip())
    return policy.channels


def _rank(alert: Alert) -> int:
    return _RANK.get(alert.severity or "warning", -1)


def plan(
    notification: Notification, channels: Sequence[ChannelPolicy], alerts: dict[str, AlertPolicy]
) -> list[Plan]:
    """One plan per channel: its candidate alerts, or the reason it gets none."""
    plans = []
    for channel in channels:
        candidates, reasons = [], set()
        for alert in notification.alerts:
            policy = alerts.get(alert.name, AlertPolicy())
            wanted = _channels(alert, policy)
            if wanted is not None and channel.name not in wanted:
                reasons.add(f"{alert.name} goes to {', '.join(wanted)} only")
            elif _rank(alert) < _RANK[channel.min_severity]:
                reasons.add(f"severity {alert.severity!r} is below min_severity {channel.min_severity}")
            elif alert.status == "resolved" and not channel.send_resolved:
                reasons.add("resolved alerts are not sent (send_resolved: false)")
            else:
                candidates.append(Candidate(alert.fingerprint, alert.status, policy.cooldown_seconds))
        skipped = "" if candidates else "; ".join(sorted(reasons))
        plans.append(Plan(channel.name, tuple(candidates), skipped))
    return plans


def only(notification: Notification, fingerprints: Sequence[str]) -> Notification:
    """The notification as one channel sees it: only its alerts, the status recomputed from them."""
    keep = set(fingerprints)
    alerts = tuple(a for a in notification.alerts if a.fingerprint in keep)
    status = "firing" if any(a.status == "firing" for a in alerts) else "resolved"
    return Notification(
        group_key=notification.group_key,
        status=status,
        receiver=notification.receiver,
        group_labels=notification.group_labels,
        common_labels=notification.common_labels,
        common_annotations=notification.common_annotations,
        external_url=notification.external_url,
        truncated_alerts=notification.truncated_alerts,
        alerts=alerts,
    )
