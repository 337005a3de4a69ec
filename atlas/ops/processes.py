"""Starting Atlas's long-running processes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, start_http_server

from atlas.engine.supervisor import DEFAULT_PIPELINE, Engine, run_engine
from atlas.logging import configure_logging, get_logger
from atlas.observability.tracing import setup_tracing
from atlas.settings import Settings
from atlas.store import open_store


def run_core(settings: Settings, *, pipeline: str | None, process: str) -> int:
    """Run the engine in this process until SIGTERM; returns the exit code."""
    configure_logging(settings.log_level, process=process)
    setup_tracing("atlas-core")
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
