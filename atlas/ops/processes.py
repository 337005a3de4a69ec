"""Starting Atlas's long-running processes."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server

from atlas.config.reference import render
from atlas.engine.supervisor import DEFAULT_PIPELINE, Engine
from atlas.logging import configure_logging, get_logger
from atlas.observability.tracing import setup_tracing
from atlas.ops.gctune import settle_heap
from atlas.ops.pidfiles import api_pid_name, pid_file
from atlas.ops.preflight import check_ports, listens
from atlas.ops.sdnotify import Liveness, Notifier, Watchdog, loop_alive
from atlas.ops.shutdown import Shutdown
from atlas.settings import Settings, setting_fields
from atlas.store import open_store

if TYPE_CHECKING:
    import uvicorn


def start_logging(settings: Settings, process: str) -> None:
    """Configure logging with every secret value redacted; log the effective settings once.

    Secret settings are logged under their own names, which the redactor always masks.
    """
    configure_logging(settings.log_level, process=process, secrets=settings.secret_values())
    get_logger("atlas.config").info(
        "settings",
        encrypted_entries=sorted(settings.secrets),  # names only; a key named *secret* is redacted
        **{f.name: render(getattr(settings, f.name)) for f in setting_fields()},
    )


def _api_server(settings: Settings, notifier: Notifier | None = None) -> uvicorn.Server:
    """The API's uvicorn server; with `notifier`, it says READY=1 once it listens and keeps the
    systemd watchdog fed while its event loop turns."""
    # Imported here, not at module level: `atlas exporter` and `atlas core` import this module and
    # would otherwise carry FastAPI and uvicorn in memory (~20 MiB RSS) without serving HTTP with them.
    import uvicorn

    from atlas.api.app import create_app

    app = create_app(settings, open_store(settings, migrate=True), commit_process=settings.api_commit_process)
    # One worker per process: one process is one scrape target (see DESIGN.md); scale with more
    # processes on more ports rather than forked workers sharing a registry.
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        workers=1,
        access_log=False,
        log_config=None,
        timeout_keep_alive=settings.api_keepalive_timeout_seconds,
        # Named, not uvicorn's "auto" (which takes uvloop and httptools whenever they are installed):
        # ATLAS_API_EVENT_LOOP decides, so what serves is what the settings say.
        loop=settings.api_event_loop,
        http="httptools" if settings.api_event_loop == "uvloop" else "h11",
        timeout_graceful_shutdown=settings.api_shutdown_timeout_seconds,
    )
    if notifier is None:
        return uvicorn.Server(config)
    from atlas.ops.notifyserver import NotifyingServer

    return NotifyingServer(config, notifier)


def run_api(settings: Settings) -> int:
    """Serve the HTTP API in this process until SIGTERM or SIGINT; returns the exit code.

    Raises ConfigError (before starting anything) when ATLAS_API_PORT cannot be bound.
    """
    shutdown = Shutdown().install()
    check_ports(listens(settings, api=True))
    start_logging(settings, "atlas-api")
    setup_tracing("atlas-api", record_unexported=False)
    notifier = Notifier.from_env()
    server = _api_server(settings, notifier)
    shutdown.on_stop(notifier.stopping)
    shutdown.on_stop(lambda: setattr(server, "should_exit", True))
    get_logger("atlas.ops").info("api serving", url=f"http://{settings.api_host}:{settings.api_port}")
    settle_heap()  # the app and its imports are built: see atlas.ops.gctune
    with pid_file(settings.data_dir, api_pid_name(settings.api_port)):
        if not shutdown.requested.is_set():
            server.run()
    return 0


def start_feed_poller(
    settings: Settings, registry: CollectorRegistry | None = None, liveness: Liveness | None = None
) -> tuple[threading.Thread, threading.Event]:
    """Poll feed subscriptions in a thread (own store connection) until the returned event is set."""
    from atlas.observability.metrics import build
    from atlas.pipeline import build_fetcher
    from atlas.pipeline.feeds import FeedPoller, run_poller

    poller = FeedPoller(
        # `atlas services` owns no schema: it polls into a database `atlas core` created.
        open_store(settings, migrate=False),
        build_fetcher(settings),
        backoff_cap_seconds=settings.feed_backoff_cap_seconds,
        default_interval=settings.feed_poll_interval_seconds,
        metrics=build(registry, "atlas_feed_polls_total") if registry is not None else None,
    )
    stop = threading.Event()
    beat = liveness.beat if liveness is not None else None
    thread = threading.Thread(
        target=run_poller, args=(poller, stop), kwargs={"beat": beat}, name="atlas-feeds", daemon=True
    )
    thread.start()
    return thread, stop


def run_services(settings: Settings) -> int:
    """`atlas services`: scheduled work (feed polling, backups, upkeep) until SIGTERM or SIGINT;
    returns the exit code."""
    shutdown = Shutdown().install()
    notifier = Notifier.from_env()
    shutdown.on_stop(notifier.stopping)
    start_logging(settings, "atlas-services")
    liveness = Liveness()
    thread, stop = start_feed_poller(settings, liveness=liveness)
    shutdown.on_stop(stop.set)
    # Backup schedules (atlas-ops backup schedule): due backups now, then checked every minute.
    from atlas.ops.backup_schedule import run_scheduler

    backups = threading.Thread(target=run_scheduler, args=(settings, stop), name="atlas-backups", daemon=True)
    backups.start()
    # Memory samples of every Atlas process, DLQ retention, PRAGMA optimize and WAL checkpoints.
    from atlas.ops.upkeep import run_upkeep

    upkeep = threading.Thread(target=run_upkeep, args=(settings, stop), name="atlas-upkeep", daemon=True)
    upkeep.start()
    get_logger("atlas.ops").info("services running", feeds="polling", backups="scheduled", upkeep="scheduled")
    polling = loop_alive(liveness, notifier)
    # The feed poller's loop turns every second; the backup scheduler and the upkeep loop sleep
    # for minutes at a time, so for them "alive" is all a probe can say.
    watchdog = Watchdog(notifier, lambda: polling() and backups.is_alive() and upkeep.is_alive()).start()
    with pid_file(settings.data_dir, "atlas-services"):
        notifier.ready()
        stop.wait()
        watchdog.stop()
        thread.join(timeout=30)
        backups.join(timeout=30)
        upkeep.join(timeout=30)
    return 0


def _serve_engine(
    settings: Settings,
    engine: Engine,
    shutdown: Shutdown,
    *,
    process: str,
    with_exporter: bool = False,
    with_feeds: bool = False,
    notifier: Notifier | None = None,
) -> int:
    """Start the engine's companions, then run the engine in the main thread until a stop signal.

    `with_exporter` (atlas up) also serves the node exporter from a thread on ATLAS_EXPORTER_PORT,
    with its own registry so neither /metrics carries the other's families. `with_feeds` (atlas up)
    also polls feeds from a thread, as `atlas services` does. `notifier` (atlas core under systemd)
    gets READY=1 once the workers are spawned and the loop turns, and WATCHDOG=1 while it does.
    """
    log = get_logger("atlas.ops")
    registry = engine.metrics.registry
    if settings.core_metrics_port:
        start_http_server(settings.core_metrics_port, settings.core_metrics_host, registry=registry)
        log.info(
            "metrics served", url=f"http://{settings.core_metrics_host}:{settings.core_metrics_port}/metrics"
        )
    if with_exporter and settings.exporter_port:
        # Imported here: the exporter package is only needed by the processes that serve it.
        from exporters import start_exporter

        start_exporter(settings)
        log.info("exporter served", url=f"http://{settings.exporter_host}:{settings.exporter_port}/metrics")
    feeds = start_feed_poller(settings, registry) if with_feeds else None
    shutdown.on_stop(engine.stop)
    watchdog = None
    if notifier is not None and notifier.enabled:
        watchdog = _engine_watchdog(engine, notifier)
        shutdown.on_stop(notifier.stopping)
    # Everything start-up builds is built: see atlas.ops.gctune. The engine settles a claim's
    # worth of documents in one go (atlas.engine.inline), thousands of objects a transaction.
    settle_heap()
    try:
        with pid_file(settings.data_dir, process):
            return engine.run()
    finally:
        if watchdog is not None:
            watchdog.stop()
        if feeds is not None:
            feeds[1].set()
            feeds[0].join(timeout=15)


def _engine_watchdog(engine: Engine, notifier: Notifier) -> Watchdog:
    liveness = Liveness(engine.monotonic)
    watchdog = Watchdog(notifier, loop_alive(liveness, notifier))

    def first_turn() -> None:
        # The first turn comes after every worker was spawned: from here items are claimed.
        engine.on_turn = liveness.beat
        liveness.beat()
        watchdog.start()
        notifier.ready()

    engine.on_turn = first_turn
    return watchdog


def run_core(settings: Settings, *, pipeline: str | None, process: str) -> int:
    """Run the engine in this process until SIGTERM or SIGINT; returns the exit code.

    Before starting anything: raises ConfigError when ATLAS_CORE_METRICS_PORT cannot be bound or
    the pipeline's settings are wrong, PipelineError when the pipeline cannot be built.
    """
    shutdown = Shutdown().install()
    notifier = Notifier.from_env()
    check_ports(listens(settings, core_metrics=True))
    start_logging(settings, process)
    setup_tracing("atlas-core", record_unexported=False)
    store = open_store(settings, migrate=True)
    try:
        engine = Engine(settings, store, pipeline=pipeline or DEFAULT_PIPELINE, registry=CollectorRegistry())
        engine.check_pipeline()
        return _serve_engine(settings, engine, shutdown, process=process, notifier=notifier)
    finally:
        store.close()


def run_up(settings: Settings) -> int:
    """Everything in one process: the API, the exporter and the alert router (ATLAS_ROUTER_PORT=0
    leaves it out) in threads, the engine in the main thread.

    Every port is checked and the pipeline built before the API starts (see run_core).
    """
    shutdown = Shutdown().install()
    check_ports(listens(settings, api=True, core_metrics=True, exporter=True, router=True))
    start_logging(settings, "atlas-up")
    setup_tracing("atlas-up", record_unexported=False)
    store = open_store(settings, migrate=True)
    try:
        engine = Engine(settings, store, pipeline=DEFAULT_PIPELINE, registry=CollectorRegistry())
        engine.check_pipeline()
        server = _api_server(settings)
        thread = threading.Thread(target=server.run, name="atlas-api", daemon=True)
        thread.start()
        get_logger("atlas.ops").info("api serving", url=f"http://{settings.api_host}:{settings.api_port}")
        router = None
        if settings.router_port:
            from atlas.alerting.router.process import start_router_thread

            router = start_router_thread(settings)
            get_logger("atlas.ops").info(
                "alert router serving", url=f"http://{settings.router_host}:{settings.router_port}"
            )
        try:
            return _serve_engine(
                settings, engine, shutdown, process="atlas-up", with_exporter=True, with_feeds=True
            )
        finally:
            server.should_exit = True
            if router is not None:
                router[1].should_exit = True
                router[0].join(timeout=15)
                router[2].stop()
            thread.join(timeout=15)
    finally:
        store.close()


def run_exporter(settings: Settings) -> int:
    """Run `atlas exporter` until SIGTERM or SIGINT; returns the exit code.

    Raises ConfigError (before starting anything) when ATLAS_EXPORTER_PORT cannot be bound.
    """
    from exporters import serve

    shutdown = Shutdown().install()
    notifier = Notifier.from_env()
    shutdown.on_stop(notifier.stopping)
    check_ports(listens(settings, exporter=True))
    start_logging(settings, "atlas-exporter")
    get_logger("atlas.ops").info(
        "exporter serving", url=f"http://{settings.exporter_host}:{settings.exporter_port}/metrics"
    )
    with pid_file(settings.data_dir, "atlas-exporter"):
        return serve(settings, shutdown.requested, notifier)
