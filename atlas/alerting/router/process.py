"""`atlas alert-router` and the router threads of `atlas up`: build the router from the settings."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from atlas.alerting.config import read_alerting, read_monitoring
from atlas.alerting.router.channels.base import Channel
from atlas.alerting.router.channels.email import EmailChannel
from atlas.alerting.router.channels.slack import SlackChannel
from atlas.alerting.router.channels.webhook import WebhookChannel
from atlas.alerting.router.metrics import RouterMetrics
from atlas.alerting.router.render import Renderer, check_templates
from atlas.alerting.router.routing import ChannelPolicy, alert_policies
from atlas.alerting.router.sender import RetryPolicy
from atlas.alerting.router.senders import Senders, ThreadSenders
from atlas.alerting.router.service import AlertRouter
from atlas.errors import ConfigError
from atlas.logging import get_logger
from atlas.ops.sdnotify import Notifier
from atlas.settings import Settings
from atlas.store.outbox import Outbox, open_outbox

if TYPE_CHECKING:
    import uvicorn

TOKEN_SECRET = "alert_router_token"
log = get_logger("atlas.router")


def router_token(settings: Settings) -> str:
    """The bearer token Alertmanager must send: the `alert_router_token` secret. Only development
    may run without one."""
    token = settings.secrets.get(TOKEN_SECRET, "")
    if not token and settings.environment != "development":
        raise ConfigError(
            f"alert router: no bearer token in {settings.environment}: store one with "
            f"`atlas-ops config secrets set {TOKEN_SECRET}`"
        )
    return token


def build_channels(
    settings: Settings, renderer: Renderer, outbox: Outbox | None, path: Path | None = None
) -> list[tuple[Channel, ChannelPolicy]]:
    """The enabled channels of monitoring.yaml (`path`, default the settings') with their secrets
    resolved. Without an outbox (the monitoring agent) mail is not threaded under a group's first
    message. Raises ConfigError for a monitoring.yaml that does not load."""
    path = settings.monitoring_path if path is None else path
    if not path.exists():
        log.warning("no monitoring.yaml: the router has no channels", path=str(path))
        return []
    config = read_monitoring(path, set(settings.secrets))
    out: list[tuple[Channel, ChannelPolicy]] = []
    for ch in config.channels:
        if not ch.enabled:
            continue
        o, secret = ch.options, {k: settings.secrets[v] for k, v in ch.secrets.items()}
        timeout = float(o.get("timeout", settings.router_send_timeout_seconds))
        channel: Channel
        if ch.kind == "email":
            tls = bool(o.get("tls", False))
            channel = EmailChannel(
                renderer,
                host=o["smtp_server"],
                port=int(o.get("smtp_port", 465 if tls else 587)),
                sender=o["from"],
                to=list(o["to"]),
                starttls=bool(o.get("starttls", not tls)),
                tls=tls,
                username=o.get("username", "") if "password_secret" in secret else "",
                password=secret.get("password_secret", ""),
                timeout_seconds=timeout,
                concurrency=int(o.get("concurrency", settings.router_concurrency)),
                thread_root=None if outbox is None else _thread_root(outbox),
            )
        elif ch.kind == "webhook":
            channel = WebhookChannel(
                o["url"],
                headers=o.get("headers"),
                bearer_token=secret.get("bearer_token_secret", ""),
                hmac_secret=secret.get("hmac_secret", ""),
                timeout_seconds=timeout,
                concurrency=int(o.get("concurrency", settings.router_concurrency)),
            )
        else:
            channel = SlackChannel(
                secret["webhook_url_secret"], renderer, channel=o.get("channel", ""), timeout_seconds=timeout
            )
        out.append((channel, ChannelPolicy(ch.kind, ch.min_severity, bool(o.get("send_resolved", True)))))
    return out


def _thread_root(outbox: Outbox) -> Callable[[str, str], str]:
    return lambda group, mid: outbox.thread_root(group, "email", mid)


def _retry(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        settings.router_retry_base_seconds, settings.router_retry_cap_seconds, settings.router_max_attempts
    )


def _lease_seconds(settings: Settings) -> float:
    # A lease must outlast one attempt (its timeout, plus Slack's pacing) or a slow send is
    # leased twice; it only matters after a crash, when the restart releases leases anyway.
    return settings.router_send_timeout_seconds * 3 + 10


def build_router(
    settings: Settings, registry: CollectorRegistry | None = None, *, sender_process: bool = False
) -> tuple[AlertRouter, str]:
    """The router (not started) and its bearer token; raises ConfigError on a bad configuration.
    With `sender_process`, its senders run in a child process (senderproc.py) instead of threads."""
    token = router_token(settings)
    problems = [f for f in check_templates(settings.config_dir) if f.severity == "error"]
    if problems:
        raise ConfigError("\n".join(str(f) for f in problems))
    alerting = read_alerting(settings.alerting_path) if settings.alerting_path.exists() else None
    outbox = open_outbox(settings)
    renderer = Renderer(settings.config_dir)
    if not sender_process:
        renderer.warm()
    channels = build_channels(settings, renderer, outbox)
    metrics = RouterMetrics(registry or CollectorRegistry())
    senders: Senders | None = None
    if sender_process:
        from atlas.alerting.router.senderproc import SenderProcess

        senders = SenderProcess(metrics.tally)
        for channel, _ in channels:
            channel.close()  # here they only name the channels: the child process sends
    router = AlertRouter(
        outbox,
        channels,
        alert_policies(alerting),
        metrics,
        _retry(settings),
        lease_seconds=_lease_seconds(settings),
        senders=senders,
    )
    return router, token


def build_senders(
    settings: Settings, tally: Callable[[str, str, float], None]
) -> tuple[ThreadSenders, Outbox]:
    """The senders of the child process (senderproc.py) and their outbox; raises ConfigError."""
    outbox = open_outbox(settings)
    channels = [c for c, _ in build_channels(settings, Renderer(settings.config_dir).warm(), outbox)]
    senders = ThreadSenders(channels, outbox, tally, _retry(settings), lease_seconds=_lease_seconds(settings))
    return senders, outbox


def router_server(
    settings: Settings, router: AlertRouter, token: str, notifier: Notifier | None = None
) -> uvicorn.Server:
    """The router's uvicorn server; with `notifier`, it says READY=1 once it listens and the
    senders have started, and keeps the systemd watchdog fed while its event loop turns."""
    import uvicorn

    from atlas.alerting.router.app import create_app

    app = create_app(router, token=token, max_body_bytes=settings.router_max_body_bytes)
    config = uvicorn.Config(
        app,
        host=settings.router_host,
        port=settings.router_port,
        workers=1,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=5,
    )
    if notifier is None:
        return uvicorn.Server(config)
    from atlas.ops.notifyserver import NotifyingServer

    return NotifyingServer(config, notifier, ready=lambda: router.started)


def run_router(settings: Settings) -> int:
    """`atlas alert-router`: serve until SIGTERM/SIGINT (uvicorn handles both), then stop the senders."""
    from atlas.ops.pidfiles import pid_file
    from atlas.ops.preflight import check_ports, listens
    from atlas.ops.processes import start_logging
    from atlas.ops.shutdown import Shutdown

    shutdown = Shutdown().install()
    # Taken from the environment before anything starts: the sender process must not inherit
    # NOTIFY_SOCKET (NotifyAccess=main would reject it, and it is not ours to say READY=1).
    notifier = Notifier.from_env()
    shutdown.on_stop(notifier.stopping)
    if not settings.router_port:
        raise ConfigError("ATLAS_ROUTER_PORT: the alert router needs a port (got 0)")
    check_ports(listens(settings, router=True))
    start_logging(settings, "atlas-alert-router")
    router, token = build_router(settings, sender_process=True)
    if not token:
        log.warning("alert router runs without a bearer token (development only)")
    server = router_server(settings, router, token, notifier)
    shutdown.on_stop(lambda: setattr(server, "should_exit", True))
    router.start()
    log.info(
        "alert router serving",
        url=f"http://{settings.router_host}:{settings.router_port}",
        channels=[c.name for c in router.channels],
    )
    try:
        with pid_file(settings.data_dir, "atlas-alert-router"):
            if not shutdown.requested.is_set():
                server.run()
    finally:
        router.stop()
        router.outbox.close()
    return 0


def start_router_thread(settings: Settings) -> tuple[threading.Thread, uvicorn.Server, AlertRouter]:
    """The router inside `atlas up`: its server in a thread, its senders in theirs."""
    router, token = build_router(settings)
    server = router_server(settings, router, token)
    router.start()
    thread = threading.Thread(target=server.run, name="atlas-alert-router", daemon=True)
    thread.start()
    return thread, server, router
