"""OpenTelemetry setup, configured only through the standard OTEL_* variables.

No exporter is installed unless one is asked for: OTEL_TRACES_EXPORTER=console prints spans;
an OTLP endpoint (OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT) uses the OTLP exporter when its package is
installed. Atlas starts and runs the same with no collector reachable.

With no exporter, processes that pass `record_unexported=False` keep OpenTelemetry's no-op tracer:
spans nobody will see cost a worker more than the item's own processing, while an incoming trace
context still flows through (the no-op span carries its parent's ids into logs).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from atlas import __version__


def _exporter(environ: Mapping[str, str]) -> SpanExporter | None:
    wanted = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if wanted == "none":
        return None
    if wanted == "console":
        return ConsoleSpanExporter()
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if wanted == "otlp" or endpoint:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            return None
        exporter: SpanExporter = OTLPSpanExporter()
        return exporter
    return None


def may_record(tracer: trace.Tracer) -> bool:
    """False when `tracer`'s spans cannot record: OpenTelemetry's no-op tracer, or the proxy that
    `trace.get_tracer` returns while no SDK TracerProvider is installed (setup_tracing chose none)."""
    if isinstance(tracer, trace.NoOpTracer):
        return False
    if isinstance(tracer, trace.ProxyTracer):
        return isinstance(trace.get_tracer_provider(), TracerProvider)
    return True


def setup_tracing(
    service: str, environ: Mapping[str, str] | None = None, *, record_unexported: bool = True
) -> TracerProvider | None:
    """Install a global TracerProvider for this process (once) and return it (None: no-op)."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    env = os.environ if environ is None else environ
    exporter = _exporter(env)
    if exporter is None and not record_unexported:
        return None
    resource = Resource.create(
        {"service.name": env.get("OTEL_SERVICE_NAME", service), "service.version": __version__}
    )
    provider = TracerProvider(resource=resource)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider
