"""`atlas monitor --daemon`: scrape Atlas's /metrics, evaluate the compiled alerts, notify.

Targets and job names are config/prometheus.yml's: `node` (the exporter), `atlas-api`,
`atlas-core` (when ATLAS_CORE_METRICS_PORT is set), `atlas-alert-router` (when ATLAS_ROUTER_PORT is
set); each scrape also yields `up{job}` so target_down works as in Prometheus. Notifications go
through the alert router's channel code, planned by its routing (min_severity, channels).
"""

from __future__ import annotations

import hashlib
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from atlas.alerting.config import read_alerting
from atlas.alerting.router.channels.base import DeliveryError, Outgoing
from atlas.alerting.router.payload import Alert, Notification
from atlas.alerting.router.process import build_channels
from atlas.alerting.router.render import Renderer
from atlas.alerting.router.routing import alert_policies, plan
from atlas.alerting.rules import rule_groups
from atlas.logging import get_logger
from atlas.monitor.evaluate import EVALUATORS, Evaluator, Sample, Transition
from atlas.ops.pidfiles import pid_file
from atlas.ops.processes import start_logging
from atlas.ops.services import api_base
from atlas.ops.shutdown import Shutdown
from atlas.settings import Settings

log = get_logger("atlas.monitor")
SCRAPE_TIMEOUT_SECONDS = 5.0


def _local(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def targets(settings: Settings) -> dict[str, str]:
    """job -> /metrics URL of every Atlas process this installation runs."""
    out = {"atlas-api": f"{api_base(settings)}/metrics"}
    if settings.exporter_port:
        out["node"] = f"http://{_local(settings.exporter_host)}:{settings.exporter_port}/metrics"
    if settings.core_metrics_port:
        out["atlas-core"] = (
            f"http://{_local(settings.core_metrics_host)}:{settings.core_metrics_port}/metrics"
        )
    if settings.router_port:
        out["atlas-alert-router"] = f"http://{_local(settings.router_host)}:{settings.router_port}/metrics"
    return out


def scrape(jobs: dict[str, str], client: httpx.Client) -> list[Sample]:
    samples: list[Sample] = []
    for job, url in jobs.items():
        instance = url.split("/")[2]
        try:
            r = client.get(url, timeout=SCRAPE_TIMEOUT_SECONDS)
            r.raise_for_status()
            families = list(text_string_to_metric_families(r.text))
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("scrape failed", job=job, url=url, error=str(exc))
            samples.append(Sample("up", {"job": job, "instance": instance}, 0.0))
            continue
        samples.append(Sample("up", {"job": job, "instance": instance}, 1.0))
        for family in families:
            for s in family.samples:
                samples.append(Sample(s.name, {**s.labels, "job": job, "instance": instance}, float(s.value)))
    return samples


def _stamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Agent:
    def __init__(self, settings: Settings, monitoring_path: Path | None = None) -> None:
        self.settings = settings
        config = read_alerting(settings.alerting_path)
        _groups, compiled = rule_groups(config)
        self.compiled = {(a.name, a.severity): a for a in compiled}
        self.evaluator = Evaluator(
            [
                (
                    a.name,
                    a.severity,
                    a.rule.name,
                    a.rule.signal.comparison,
                    a.threshold,
                    a.rule.for_seconds,
                    a.rule.cooldown_seconds,
                )
                for a in compiled
                if not a.rule.custom and a.rule.name in EVALUATORS
            ]
        )
        self.skipped = sorted(
            {a.rule.name for a in compiled if a.rule.custom or a.rule.name not in EVALUATORS}
        )
        self.policies = alert_policies(config)
        self.channels = build_channels(settings, Renderer(settings.config_dir), None, monitoring_path)
        self.jobs = targets(settings)
        self.client = httpx.Client()
        self.host = socket.gethostname()

    def notification(self, t: Transition) -> Notification:
        compiled = self.compiled[(t.alert, t.severity)]
        labels = {"alertname": t.alert, **dict(t.labels), **compiled.labels}
        fingerprint = hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()[:16]
        annotations = {
            k: v.replace("{{ $value }}", f"{t.value:g}") for k, v in compiled.body["annotations"].items()
        }
        alert = Alert(
            status=t.status,
            labels=labels,
            annotations=annotations,
            starts_at=_stamp(t.since),
            ends_at="0001-01-01T00:00:00Z" if t.status == "firing" else _stamp(time.time()),
            generator_url="",
            fingerprint=fingerprint,
        )
        return Notification(
            group_key=f'{{}}:{{alertname="{t.alert}"}}',
            status=t.status,
            receiver=f"atlas-monitor@{self.host}",
            group_labels={"alertname": t.alert},
            common_labels=labels,
            common_annotations=annotations,
            external_url="",
            truncated_alerts=0,
            alerts=(alert,),
        )

    def notify(self, t: Transition) -> None:
        notification = self.notification(t)
        plans = {p.channel: p for p in plan(notification, [p for _, p in self.channels], self.policies)}
        for channel, _policy in self.channels:
            if not plans[channel.name].candidates:
                continue
            try:
                channel.send(Outgoing(0, 0, notification.dedupe_key, notification))
                log.info(
                    "notified", alert=t.alert, severity=t.severity, status=t.status, channel=channel.name
                )
            except DeliveryError as exc:  # the next cooldown tries again; the log says why now
                log.warning("notification failed", alert=t.alert, channel=channel.name, error=str(exc))

    def step(self, now: float) -> list[Transition]:
        transitions = self.evaluator.evaluate(scrape(self.jobs, self.client), now)
        for t in transitions:
            self.notify(t)
        return transitions

    def close(self) -> None:
        self.client.close()
        for channel, _ in self.channels:
            channel.close()


def run_monitor(settings: Settings, monitoring_path: Path | None = None) -> int:
    """Evaluate every `evaluation` interval of monitoring.yaml until SIGTERM/SIGINT; exit 0."""
    from atlas.alerting.config import read_monitoring

    shutdown = Shutdown().install()
    start_logging(settings, "atlas-monitoring")
    path = settings.monitoring_path if monitoring_path is None else monitoring_path
    interval = read_monitoring(path, set(settings.secrets)).intervals["evaluation"] if path.exists() else 15.0
    agent = Agent(settings, monitoring_path)
    log.info(
        "monitoring agent evaluating",
        interval_seconds=interval,
        targets=agent.jobs,
        needs_prometheus=agent.skipped,
        channels=[c.name for c, _ in agent.channels],
    )
    try:
        with pid_file(settings.data_dir, "atlas-monitoring"):
            while not shutdown.requested.is_set():
                agent.step(time.time())
                shutdown.requested.wait(interval)
    finally:
        agent.close()
    return 0
