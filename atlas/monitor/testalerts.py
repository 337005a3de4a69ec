"""`atlas monitor --test-alerts`: one clearly marked test notification through every enabled
channel of monitoring.yaml, sent by the alert router's own channel code, once (no retries: the
operator wants to see the first answer), and what each channel did."""

from __future__ import annotations

import hashlib
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from atlas.alerting.config import read_monitoring
from atlas.alerting.router.channels.base import Deferred, DeliveryError, Outgoing
from atlas.alerting.router.payload import Alert, Notification
from atlas.alerting.router.process import build_channels
from atlas.alerting.router.render import Renderer
from atlas.settings import Settings

TEST_ALERT = "AtlasTestNotification"


@dataclass(frozen=True)
class ChannelResult:
    channel: str
    outcome: str  # sent | failed | disabled
    detail: str


def marked_notification(now: float, host: str) -> Notification:
    """A firing, critical (so no min_severity holds it back) alert that says it is a test."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = {"alertname": TEST_ALERT, "severity": "critical", "test": "true", "instance": host}
    fingerprint = hashlib.sha256(f"{host}\x1f{stamp}".encode()).hexdigest()[:16]
    alert = Alert(
        status="firing",
        labels=labels,
        annotations={
            "summary": f"TEST notification from the Atlas monitoring agent on {host}: no action needed",
            "description": (
                "This is a test sent by `atlas monitor --test-alerts` to check that this channel "
                f"delivers. Sent at {stamp}. Nothing is wrong."
            ),
        },
        starts_at=stamp,
        ends_at="0001-01-01T00:00:00Z",
        generator_url="",
        fingerprint=fingerprint,
    )
    return Notification(
        group_key=f'{{}}:{{alertname="{TEST_ALERT}"}}',
        status="firing",
        receiver="atlas-monitor-test",
        group_labels={"alertname": TEST_ALERT},
        common_labels=labels,
        common_annotations=dict(alert.annotations),
        external_url="",
        truncated_alerts=0,
        alerts=(alert,),
    )


def send_test_alerts(
    settings: Settings, path: Path | None = None, now: float | None = None
) -> list[ChannelResult]:
    """Send the test notification on every enabled channel; one result per configured channel.

    Raises ConfigError when monitoring.yaml does not load or names a missing secret."""
    path = settings.monitoring_path if path is None else path
    results: list[ChannelResult] = []
    if path.exists():
        config = read_monitoring(path, set(settings.secrets))
        results += [
            ChannelResult(c.kind, "disabled", "enabled: false") for c in config.channels if not c.enabled
        ]
    notification = marked_notification(time.time() if now is None else now, socket.gethostname())
    out = Outgoing(0, 0, notification.dedupe_key, notification)
    for channel, _policy in build_channels(settings, Renderer(settings.config_dir), None, path):
        try:
            channel.send(out)
        except Deferred as exc:
            results.append(ChannelResult(channel.name, "failed", f"deferred, not sent: {exc}"))
        except DeliveryError as exc:
            kind = type(exc).__name__.replace("DeliveryError", "").lower() or "error"
            results.append(ChannelResult(channel.name, "failed", f"{kind}: {exc}"))
        except Exception as exc:  # a channel bug is still this channel's answer, not the others'
            results.append(ChannelResult(channel.name, "failed", f"{type(exc).__name__}: {exc}"))
        else:
            results.append(ChannelResult(channel.name, "sent", f"delivered ({TEST_ALERT})"))
        finally:
            channel.close()
    return sorted(results, key=lambda r: r.channel)
