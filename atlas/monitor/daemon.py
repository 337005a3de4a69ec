"""`atlas monitor --daemon`: scrape Atlas's /metrics, evaluate the compiled alerts, notify.

Every alert atlas.rules.yml holds is evaluated (atlas.monitor.compiled), on a bounded history of
the scraped series (atlas.monitor.history); custom `expr:` alerts are left to Prometheus and named
in the start-up log.

Targets and job names are config/prometheus.yml's: `node` (the exporter), `atlas-api`,
`atlas-core` (when ATLAS_CORE_METRICS_PORT is set), `atlas-alert-router` (when ATLAS_ROUTER_PORT is
set); each scrape also yields `up{job}` so target_down works as in Prometheus. Notifications go
through the alert router's channel code, planned by its routing (min_severity, channels).
"""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from atlas.alerting.config import read_alerting
from atlas.alerting.promtests import TestGenerationError, render
from atlas.alerting.router.channels.base import DeliveryError, Outgoing
from atlas.alerting.router.payload import Alert, Notification
from atlas.alerting.router.process import build_channels
from atlas.alerting.router.render import Renderer
from atlas.alerting.router.routing import alert_policies, plan
from atlas.logging import get_logger
from atlas.monitor.compiled import agent_alerts
from atlas.monitor.evaluate import Evaluator, Transition, reads
from atlas.monitor.history import History
from atlas.ops.pidfiles import pid_file
from atlas.ops.processes import start_logging
from atlas.ops.sdnotify import Liveness, Notifier, Watchdog, loop_alive
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


Scraped = list[tuple[dict[str, str], float]]  # (labels with __name__, value)


def scrape(job: str, url: str, client: httpx.Client) -> Scraped:
    """One target's samples with `job` and `instance` attached, plus `up` as Prometheus adds it
    (a failed scrape is `up` 0 alone, so the target's other series go stale)."""
    base = {"job": job, "instance": url.split("/")[2]}
    try:
        r = client.get(url, timeout=SCRAPE_TIMEOUT_SECONDS)
        r.raise_for_status()
        families = list(text_string_to_metric_families(r.text))
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("scrape failed", job=job, url=url, error=str(exc))
        return [({"__name__": "up", **base}, 0.0)]
    out: Scraped = [({"__name__": "up", **base}, 1.0)]
    for family in families:
        for s in family.samples:
            out.append(({**s.labels, **base, "__name__": s.name}, float(s.value)))
    return out


def _stamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _annotation(text: str, value: float, labels: dict[str, str]) -> str:
    try:
        return render(text, value, labels)
    except TestGenerationError:  # a custom template the renderer does not know: sent as written
        return text


class Agent:
    def __init__(
        self, settings: Settings, monitoring_path: Path | None = None, interval: float = 15.0
    ) -> None:
        self.settings = settings
        config = read_alerting(settings.alerting_path)
        rules = agent_alerts(config)
        self.meta = rules.meta
        self.skipped = rules.needs_prometheus
        self.evaluator = Evaluator(rules.alerts)
        self.history = History(reads(rules.alerts), interval)
        self.policies = alert_policies(config)
        self.channels = build_channels(settings, Renderer(settings.config_dir), None, monitoring_path)
        self.jobs = targets(settings)
        self.client = httpx.Client()
        self.host = socket.gethostname()
        # Called after each scrape and each notification: every one is bounded by its timeout, so
        # a step that stops calling it is stuck (run_monitor's watchdog withholds its ping).
        self.progress: Callable[[], None] = lambda: None

    def notification(self, t: Transition) -> Notification:
        meta = self.meta[(t.alert, t.severity)]
        labels = {"alertname": t.alert, **dict(t.labels), **meta.labels}
        fingerprint = hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()[:16]
        annotations = {k: _annotation(v, t.value, labels) for k, v in meta.annotations.items()}
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
        for job, url in self.jobs.items():
            self.history.ingest(job, now, scrape(job, url, self.client))
            self.progress()
        transitions = self.evaluator.evaluate(self.history, now)
        for t in transitions:
            self.notify(t)
            self.progress()
        return transitions

    def close(self) -> None:
        self.client.close()
        for channel, _ in self.channels:
            channel.close()


def run_monitor(settings: Settings, monitoring_path: Path | None = None) -> int:
    """Evaluate every `evaluation` interval of monitoring.yaml until SIGTERM/SIGINT; exit 0."""
    from atlas.alerting.config import read_monitoring

    shutdown = Shutdown().install()
    notifier = Notifier.from_env()
    shutdown.on_stop(notifier.stopping)
    start_logging(settings, "atlas-monitoring")
    path = settings.monitoring_path if monitoring_path is None else monitoring_path
    interval = read_monitoring(path, set(settings.secrets)).intervals["evaluation"] if path.exists() else 15.0
    agent = Agent(settings, monitoring_path, interval)
    log.info(
        "monitoring agent evaluating",
        interval_seconds=interval,
        targets=agent.jobs,
        needs_prometheus=agent.skipped,
        longest_window_seconds=max((w for _, w in agent.history.reads), default=0.0),
        channels=[c.name for c, _ in agent.channels],
    )
    liveness = Liveness()
    agent.progress = liveness.beat
    watchdog = Watchdog(notifier, loop_alive(liveness, notifier))
    try:
        with pid_file(settings.data_dir, "atlas-monitoring"):
            # Ready once the first evaluation is scheduled: it runs right away, as every later one
            # does at its interval; a target that is down is a finding, not a failed start.
            watchdog.start()
            notifier.ready()
            while not shutdown.requested.is_set():
                agent.step(time.time())
                _wait(shutdown, interval, liveness)
    finally:
        watchdog.stop()
        agent.close()
    return 0


def _wait(shutdown: Shutdown, seconds: float, liveness: Liveness) -> None:
    """Sleep until the next evaluation or a stop, beating at least every second: an evaluation
    interval may be longer than WatchdogSec, and waiting for it is the loop turning, not stuck."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        liveness.beat()
        if shutdown.requested.wait(min(left, 1.0)):
            return
    liveness.beat()
