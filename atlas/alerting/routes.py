"""alerting.yaml -> alertmanager.yml: the routing tree, inhibitions and the alert router receivers.

Every alert goes to the Atlas alert router's webhook (POST /v1/alertmanager, bearer token read
from a file so the secret never sits in the config). Alerts limited to some channels go to a
receiver whose URL names them (`?channels=email,slack`) and carry them as the `channels` label too.

`cooldown` becomes the alert's route's `repeat_interval`. Alertmanager only considers repeating a
notification when a group is flushed, every `group_interval`, so a repeat_interval shorter than
group_interval could not take effect: group_interval is at most half the cooldown.
"""

from __future__ import annotations

from typing import Any

from atlas.alerting.config import AlertingConfig
from atlas.alerting.rules import CompiledAlert, duration
from atlas.alerting.slo import alert_name as slo_alert_name

DEFAULT_RECEIVER = "atlas-router"
GROUP_WAIT_SECONDS = 30.0
GROUP_INTERVAL_SECONDS = 300.0
MIN_GROUP_INTERVAL_SECONDS = 10.0


def receiver_name(channels: tuple[str, ...]) -> str:
    return DEFAULT_RECEIVER if not channels else f"{DEFAULT_RECEIVER}-{'-'.join(channels)}"


def group_interval(cooldown_seconds: float) -> float:
    return max(MIN_GROUP_INTERVAL_SECONDS, min(GROUP_INTERVAL_SECONDS, cooldown_seconds // 2))


def _receiver(config: AlertingConfig, channels: tuple[str, ...]) -> dict[str, Any]:
    url = config.router.url + (f"?channels={','.join(channels)}" if channels else "")
    return {
        "name": receiver_name(channels),
        "webhook_configs": [
            {
                "url": url,
                "send_resolved": True,
                "http_config": {
                    "authorization": {"type": "Bearer", "credentials_file": config.router.credentials_file}
                },
            }
        ],
    }


def _route(alertname: str, channels: tuple[str, ...], cooldown: float) -> dict[str, Any]:
    return {
        "receiver": receiver_name(channels),
        "matchers": [f"alertname={alertname}"],
        "group_interval": duration(group_interval(cooldown)),
        "repeat_interval": duration(cooldown),
    }


def alertmanager_config(config: AlertingConfig, alerts: list[CompiledAlert]) -> dict[str, Any]:
    """alertmanager.yml as data."""
    routes: dict[str, dict[str, Any]] = {}
    channel_sets: set[tuple[str, ...]] = {()}
    inhibit_equal: list[str] = ["alertname"]
    for alert in alerts:
        rule = alert.rule
        channel_sets.add(rule.channels)
        routes.setdefault(alert.name, _route(alert.name, rule.channels, rule.cooldown_seconds))
        inhibit_equal += [label for label in rule.signal.by if label not in inhibit_equal]
    for slo in config.slos:
        if slo.enabled:
            channel_sets.add(slo.channels)
            name = slo_alert_name(slo)
            routes.setdefault(name, _route(name, slo.channels, config.default_cooldown_seconds))
    inhibit_equal += [label for label in ("sloth_id",) if label not in inhibit_equal]
    default = config.default_cooldown_seconds
    return {
        "route": {
            "receiver": DEFAULT_RECEIVER,
            # Every alert series is its own group: cooldown is per firing alert, as alerting.yaml says.
            "group_by": ["..."],
            "group_wait": duration(GROUP_WAIT_SECONDS),
            "group_interval": duration(group_interval(default)),
            "repeat_interval": duration(default),
            "routes": list(routes.values()),
        },
        # Critical silences the warning of the same alert on the same series (labels the alert's
        # signal keeps; a label both lack counts as equal).
        "inhibit_rules": [
            {
                "source_matchers": ["severity=critical"],
                "target_matchers": ["severity=warning"],
                "equal": inhibit_equal,
            }
        ],
        "receivers": [_receiver(config, c) for c in sorted(channel_sets)],
    }
