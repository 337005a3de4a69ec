"""Starting Atlas's long-running processes."""

from __future__ import annotations

import threading

import uvicorn
from prometheus_client import CollectorRegistry, start_http_server

from atlas.api.app import create_app
from atlas.engine.supervisor import DEFAULT_PIPELINE, Engine, run_engine
from atlas.logging import configure_logging, get_logger
from atlas.observability.tracing import setup_tracing
from atlas.settings import Settings
from atlas.store import open_store


def _api_server(settings: Settings) -> uvicorn.Server:
    app = create_app(settings, open_store(settings))
    # One worker per process: one process is one scrape target (see DESIGN.md); scale with more
    # processes on more ports rather than forked workers sharing a registry.
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        workers=1,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )
    return uvicorn.Server(config)


def run_api(settings: Settings) -> int:
    """Serve the HTTP API in this process until SIGTERM; returns the exit code."""
    configure_logging(settings.log_level, process="atlas-api")
    setup_tracing("atlas-api", record_unexported=False)
    server = _api_server(settings)
    get_logger("atlas.ops").info("api serving", url=f"http://{settings.api_host}:{settings.api_port}")
    server.run()
    return 0


def run_core(settings: Settings, *, pipeline: str | None, process: str) -> int:
    """Run the engine in this process until SIGTERM; returns the exit code."""
    configure_logging(settings.log_level, process=process)
    setup_tracing("atlas-core", record_unexported=False)
    log = get_logger("atlas.ops")
    store = open_store(settings)
    registry = CollectorRegistry()
    engine = Engine(settings, store, pipeline=pipeline or DEFAULT_PIPELINE, registry=registry)
    if settings.core_metrics_port:
        start_http_server(settings.core_metrics_port, settings.core_metrics_host, registry=registry)
        log.info(
            "metrics served", url=f"http://{settings.core_metrics_host}:{settings.core_metrics_port}/metrics"
        )
    try:
        return run_engine(engine)
    finally:
        store.close()


def run_up(settings: Settings) -> int:
    """Everything in one process: the API in a thread, the engine in the main thread."""
    configure_logging(settings.log_level, process="atlas-up")
    setup_tracing("atlas-up", record_unexported=False)
    server = _api_server(settings)
    thread = threading.Thread(target=server.run, name="atlas-api", daemon=True)
    thread.start()
    get_logger("atlas.ops").info("api serving", url=f"http://{settings.api_host}:{settings.api_port}")
    try:
        return run_core(settings, pipeline=None, process="atlas-up")
    finally:
        server.should_exit = True
        thread.join(timeout=15)
