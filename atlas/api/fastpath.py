"""POST /v1/items served before the framework's per-request machinery.

Single-item ingest is the hot path: the issue asks it to run at >= 0.8 of a bare FastAPI endpoint
while committing every item durably. This ASGI layer answers exactly that route with the same
logic as the FastAPI route (routes_items.accept_one), the same guards (body limits, keys, scopes,
rate limit, backpressure), headers, metrics and trace context; every other request passes through
to FastAPI untouched. The FastAPI route stays for the OpenAPI document and for apps without
this layer.
"""

from __future__ import annotations

import time

from opentelemetry import context as otel_context
from starlette.types import ASGIApp, Receive, Scope, Send

from atlas.api.guards import ApiError, Disconnected, context_for, read_body, security_headers, send_json
from atlas.api.httpmetrics import HttpMetrics
from atlas.api.routes_items import accept_one
from atlas.api.services import Services
from atlas.logging import get_logger

ROUTE = "/v1/items"
log = get_logger("atlas.api")


class IngestFastPath:
    """As a middleware (app given) or called first by AtlasAPI before the whole stack (app None)."""

    def __init__(
        self, app: ASGIApp | None, svc: Services, http_metrics: HttpMetrics, attach_context: bool
    ) -> None:
        # attach_context: no OpenTelemetry middleware runs outside this one, so make the caller's
        # trace context (or a fresh one) current here, as TraceContext does for other routes.
        self.app, self.svc, self.http, self.attach_context = app, svc, http_metrics, attach_context
        self.cors = bool(svc.settings.api_cors_origins)
        self.extra = security_headers(ROUTE, svc.settings.api_behind_tls)  # the same every request

    def handles(self, scope: Scope) -> bool:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != ROUTE:
            return False
        # A browser's cross-origin request needs the CORS middleware's headers: the full stack.
        return not (self.cors and any(name == b"origin" for name, _ in scope["headers"]))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None, "as a middleware, IngestFastPath wraps an app"
        if self.handles(scope):
            await self.handle(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        gauge = self.http.started(ROUTE, "POST")
        token = otel_context.attach(context_for(scope)) if self.attach_context else None
        status = 500
        try:
            status = await self._serve(scope, receive, send)
        finally:
            self.http.finished(ROUTE, "POST", status, time.perf_counter() - started, gauge)
            if token is not None:
                otel_context.detach(token)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> int:
        svc, extra = self.svc, self.extra
        try:
            authorization, idempotency_key = "", None
            for name, value in scope["headers"]:
                if name == b"authorization":
                    authorization = value.decode("latin-1")
                elif name == b"idempotency-key":
                    idempotency_key = value.decode("latin-1")
            svc.auth.authenticate(authorization, "ingest")
            body = await read_body(
                scope, receive, svc.settings.api_max_body_bytes, svc.settings.api_max_json_depth
            )
            status, answer = await accept_one(svc, body, idempotency_key)
        except Disconnected:
            return 499  # nginx's "client closed request": nothing to answer
        except ApiError as exc:
            headers = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
            await send_json(send, exc.status, {"error": exc.message, **exc.extra}, headers + extra)
            return exc.status
        except Exception:
            # In front of the stack there is no ServerErrorMiddleware: answer 500 as it would.
            log.exception("ingest fast path failed")
            await send_json(send, 500, {"error": "internal error"}, extra)
            return 500
        await send_json(send, status, answer, extra)
        return status
