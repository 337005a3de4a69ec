"""The API app factory: one FastAPI app per process, with everything it needs passed in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Receive, Scope, Send

from atlas import __version__
from atlas.api import routes_content, routes_items, routes_ops
from atlas.api.fastpath import IngestFastPath
from atlas.api.groupcommit import GroupCommitter
from atlas.api.guards import ApiError, Authenticator, BodyGuard, SecurityHeaders, TraceContext
from atlas.api.httpmetrics import HttpMetrics
from atlas.api.keys import KeyChecker
from atlas.api.pressure import Pressure
from atlas.api.services import Services
from atlas.errors import ConfigError
from atlas.observability.metrics import ApiMetrics
from atlas.settings import Settings
from atlas.store.sqlite import SQLiteStore


class AtlasAPI(FastAPI):
    """FastAPI, with the ingest fast path (when set) answering its route before the whole stack."""

    fast_path: IngestFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast_path = self.fast_path
        if fast_path is not None and fast_path.handles(scope):
            await fast_path.handle(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(settings: Settings, store: SQLiteStore, registry: CollectorRegistry | None = None) -> FastAPI:
    """Build the app. Background parts (group commit, pressure sampler) start with its lifespan."""
    if settings.api_auth_disabled and settings.environment == "production":
        raise ConfigError("ATLAS_API_AUTH_DISABLED: authentication cannot be disabled in production")
    registry = registry or CollectorRegistry()
    api_metrics = ApiMetrics(registry)
    svc = Services(
        settings=settings,
        store=store,
        committer=GroupCommitter(store, settings.api_max_pending_rows),
        pressure=Pressure(settings, store),
        auth=Authenticator(
            KeyChecker.for_settings(store, settings),
            settings.api_auth_disabled,
            settings.api_rate_limit_per_key,
            settings.api_rate_burst,
        ),
        metrics=api_metrics,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        svc.committer.start()
        svc.pressure.start()
        try:
            yield
        finally:
            svc.pressure.stop()
            svc.committer.stop()
            svc.auth.checker.close()  # writes the key use still waiting

    app = AtlasAPI(
        # FastAPI's own telemetry would trace every request a second time beside the
        # OpenTelemetry FastAPI instrumentation below, which Atlas configures (OTEL_* only).
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        title="Atlas",
        version=__version__,
        lifespan=lifespan,
        description="Durable ingest of documents, web pages and feeds.",
    )
    app.state.services = svc
    app.include_router(routes_items.build(svc))
    app.include_router(routes_content.build(svc))
    app.include_router(routes_ops.build(svc))

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "request"
        return JSONResponse({"error": f"{where}: {first['msg']}"}, status_code=422)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint(request: Request) -> Response:
        # OpenMetrics when asked (it carries the trace-id exemplars), text format 0.0.4 otherwise.
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(registry), media_type=content_type)

    app.add_middleware(HttpMetrics, routes=app.routes, metrics=api_metrics)
    app.add_middleware(
        BodyGuard, max_bytes=settings.api_max_body_bytes, max_depth=settings.api_max_json_depth
    )
    if settings.api_cors_origins:
        if "*" in settings.api_cors_origins:
            raise ConfigError(
                "ATLAS_API_CORS_ORIGINS: '*' is not allowed (credentials are never sent to any origin)"
            )
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.api_cors_origins),
            allow_credentials=True,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        )
    app.add_middleware(SecurityHeaders, hsts=settings.api_behind_tls)
    # The ingest fast path keeps the same headers, limits, keys, metrics and trace context as the
    # FastAPI route (see atlas.api.fastpath). The outermost layer makes the request's trace
    # context current in everything inside, exemplars included.
    fast_path_metrics = HttpMetrics(None, app.routes, api_metrics)
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        # Spans are exported: the fast path sits inside the OpenTelemetry FastAPI instrumentation,
        # which records one server span per request (per-message send/receive spans would double
        # the cost for detail nobody reads).
        app.add_middleware(IngestFastPath, svc=svc, http_metrics=fast_path_metrics, attach_context=False)
        FastAPIInstrumentor.instrument_app(
            app, excluded_urls="metrics,health/live", exclude_spans=["receive", "send"]
        )
    else:
        # Nothing exports spans: the fast path answers in front of everything, Starlette's error
        # and FastAPI's body-limit layers included (~15% of a single-item request's samples under
        # py-spy; wrk's figure did not move beyond its run-to-run spread). Other routes get the
        # trace context from a lean middleware, skipping the ~0.1 ms per request the
        # instrumentation costs even with a no-op tracer (measured in-process).
        app.fast_path = IngestFastPath(None, svc, fast_path_metrics, attach_context=True)
        app.add_middleware(TraceContext)
    return app
