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
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Match
from starlette.types import Receive, Scope, Send

from atlas import __version__
from atlas.api import routes_content, routes_items, routes_ops
from atlas.api.commitproc import CommitProcess, SplitCommitter
from atlas.api.fastpath import IngestFastPath
from atlas.api.groupcommit import Committer, GroupCommitter
from atlas.api.guards import ApiError, Authenticator, BodyGuard, SecurityHeaders, TraceContext
from atlas.api.httpmetrics import HttpMetrics, endpoints
from atlas.api.keys import KeyChecker
from atlas.api.pressure import Pressure
from atlas.api.services import Services
from atlas.errors import ConfigError
from atlas.observability.metrics import ApiMetrics, watch_store_locks
from atlas.settings import Settings
from atlas.store.protocols import AtlasStore


class AtlasAPI(FastAPI):
    """FastAPI, with the ingest fast path (when set) answering its route before the whole stack."""

    fast_path: IngestFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast_path = self.fast_path
        if fast_path is not None and fast_path.handles(scope):
            await fast_path.handle(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


class JsonCORSMiddleware(CORSMiddleware):
    """Starlette's CORS middleware, refusing a preflight with the API's JSON error body (it answers
    400 "Disallowed CORS origin" in plain text), naming what the browser asked for."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        what = bytes(response.body).decode().removeprefix("Disallowed CORS ")
        asked = {
            "origin": request_headers.get("origin"),
            "method": request_headers.get("access-control-request-method"),
            "headers": request_headers.get("access-control-request-headers"),
        }
        detail = ", ".join(f"{name} {asked[name]!r}" for name in what.split(", ") if asked.get(name))
        headers = {k: v for k, v in response.headers.items() if k not in ("content-length", "content-type")}
        return JSONResponse(
            {"error": f"CORS preflight refused: not allowed: {detail or what}"}, 400, headers=headers
        )


def create_app(
    settings: Settings,
    store: AtlasStore,
    registry: CollectorRegistry | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    commit_process: bool = False,
) -> FastAPI:
    """Build the app. Background parts (group commit, pressure sampler) start with its lifespan.

    `tracer_provider` defaults to the global one (set from OTEL_* by atlas.observability.tracing);
    spans are recorded and exported when it is an SDK TracerProvider. Tests pass their own
    rather than set the process-wide provider, which would change every later app.

    `commit_process`: commit the items of small requests in a child process (atlas.api.commitproc),
    as `atlas api` does by default; else all in a thread of this process (atlas.api.groupcommit),
    which tests that wrap the store in this process need.
    """
    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    if settings.api_auth_disabled and settings.environment == "production":
        raise ConfigError("ATLAS_API_AUTH_DISABLED: authentication cannot be disabled in production")
    registry = registry or CollectorRegistry()
    api_metrics = ApiMetrics(registry)
    committer: Committer = GroupCommitter(store, settings.api_max_pending_rows, api_metrics.commit_rows)
    if commit_process:
        small = CommitProcess(settings, store, settings.api_max_pending_rows, api_metrics.commit_rows)
        committer = SplitCommitter(small, committer, settings.api_max_pending_rows)
    watch_store_locks(registry, store, committer)
    svc = Services(
        settings=settings,
        store=store,
        committer=committer,
        pressure=Pressure(settings, store),
        auth=Authenticator(
            KeyChecker.for_settings(store, settings),
            settings.api_auth_disabled,
            settings.api_rate_limit_per_key,
            settings.api_rate_burst,
            on_rate_limited=api_metrics.shed.labels("429").inc,
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
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Malformed JSON is 400 on every route (the items routes parse their bodies themselves).
        malformed = any(e["type"] == "json_invalid" for e in exc.errors()[:1])
        return JSONResponse(
            {"error": validation_message(request, exc)}, status_code=400 if malformed else 422
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # Starlette's 404/405 and FastAPI's 400 for an unreadable body, in Atlas's error shape.
        headers = dict(exc.headers or {})
        if exc.status_code == 404:
            message = f"no such path: {request.url.path}"
        elif exc.status_code == 405:
            allowed = allowed_methods(app.router.routes, request.scope)
            headers["Allow"] = ", ".join(allowed)
            message = f"{request.method} is not allowed on {request.url.path} (allowed: {', '.join(allowed)})"
        elif exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            message = f"request body is not valid UTF-8 (byte {exc.__cause__.start})"
        else:
            message = str(exc.detail)
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=headers)

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
            JsonCORSMiddleware,
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
    if isinstance(provider, TracerProvider):
        # Spans are exported: the fast path sits inside the OpenTelemetry FastAPI instrumentation,
        # which records one server span per request (per-message send/receive spans would double
        # the cost for detail nobody reads).
        app.add_middleware(IngestFastPath, svc=svc, http_metrics=fast_path_metrics, attach_context=False)
        FastAPIInstrumentor.instrument_app(
            app,
            excluded_urls="metrics,health/live",
            exclude_spans=["receive", "send"],
            tracer_provider=provider,
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


def allowed_methods(routes: list[BaseRoute], scope: Scope) -> list[str]:
    """Every method some route serves on this path: one path is often several routes (GET and POST
    /v1/items), and Starlette's 405 names only the first route's methods in its Allow header."""
    matching = [r for r in endpoints(routes) if r.matches(scope)[0] != Match.NONE]
    if not matching:
        return []
    # The resource is the template the router picks first (/v1/items/batch, not /v1/items/{item_id}),
    # as the OpenAPI document lists methods per template.
    template = matching[0].path
    return sorted({m for r in matching if r.path == template for m in r.methods or ()})


def validation_message(request: Request, exc: RequestValidationError) -> str:
    """The first error, as `field: what is wrong`, in the wording the items routes use."""
    errors = exc.errors()
    if not errors:
        return "request: invalid"
    first = errors[0]
    if first["type"] == "json_invalid":  # answered 400, as the items routes answer it
        # FastAPI's location is a character offset; say line and column as atlas's own parser does.
        doc = exc.body if isinstance(exc.body, str) else ""
        pos = int(first["loc"][-1]) if first["loc"] and isinstance(first["loc"][-1], int) else 0
        line = doc.count("\n", 0, pos) + 1
        column = pos - doc.rfind("\n", 0, pos)
        return (
            f"malformed JSON at line {line} column {column}: {first.get('ctx', {}).get('error', 'invalid')}"
        )
    where = ".".join(str(p) for p in first["loc"] if p != "body") or "request"
    if first["type"] == "extra_forbidden":
        allowed = body_fields(request, first["loc"])
        return f"{where}: unknown field" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
    return f"{where}: {first['msg']}"


def body_fields(request: Request, loc: tuple[int | str, ...]) -> list[str]:
    """The fields the route's body model accepts, for an unknown field at its top level."""
    route = request.scope.get("route")
    field = getattr(route, "body_field", None)
    model = getattr(getattr(field, "field_info", None), "annotation", None)
    fields = getattr(model, "model_fields", None)
    if len(loc) != 2 or loc[0] != "body" or not isinstance(fields, dict):
        return []
    return sorted(fields)
