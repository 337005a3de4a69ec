"""The router's HTTP face: the Alertmanager webhook, health, metrics and the audit trail."""

from __future__ import annotations

import hmac
import json
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from atlas.alerting.router.payload import STATUSES, PayloadError, parse_notification
from atlas.alerting.router.service import AlertRouter
from atlas.errors import StoreError


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _auth(request: Request, token: str) -> JSONResponse | None:
    """None when the request carries the router's bearer token; else its 401 or 403 answer."""
    if not token:
        return None  # no token configured (development only: process.py refuses it elsewhere)
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return _error(401, "Authorization: Bearer <token> required", {"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return _error(403, "bearer token not accepted")
    return None


async def _body(request: Request, cap: int) -> bytes | JSONResponse:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap:
        return _error(413, f"body: larger than {cap} bytes (ATLAS_ROUTER_MAX_BODY_BYTES)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            return _error(413, f"body: larger than {cap} bytes (ATLAS_ROUTER_MAX_BODY_BYTES)")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(router: AlertRouter, *, token: str, max_body_bytes: int) -> FastAPI:
    app = FastAPI(title="Atlas alert router", docs_url=None, redoc_url=None)

    @app.post("/v1/alertmanager")
    async def alertmanager(request: Request) -> Response:
        denied = _auth(request, token)
        if denied is not None:
            return denied
        body = await _body(request, max_body_bytes)
        if isinstance(body, JSONResponse):
            return body
        try:
            notification = parse_notification(json.loads(body))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _error(400, f"body: not JSON: {exc}")
        except PayloadError as exc:
            return _error(400, str(exc))
        try:
            accepted = await anyio.to_thread.run_sync(router.accept, notification)
        except StoreError as exc:
            # 5xx: Alertmanager retries the notification, so refusing it loses nothing.
            return _error(503, f"not stored: {exc}", {"Retry-After": "5"})
        return JSONResponse(
            {
                "id": accepted.notification_id,
                "duplicate": accepted.duplicate,
                "deliveries": accepted.deliveries,
            }
        )

    @app.get("/v1/notifications")
    async def notifications(
        request: Request, status: str | None = None, channel: str | None = None, limit: int = 100
    ) -> Response:
        denied = _auth(request, token)
        if denied is not None:
            return denied
        if status is not None and status not in STATUSES:
            return _error(400, f"status: expected firing or resolved, got {status!r}")
        if not 1 <= limit <= 1000:
            return _error(400, f"limit: expected 1-1000, got {limit}")
        rows = await anyio.to_thread.run_sync(
            lambda: router.outbox.notifications(status=status, channel=channel, limit=limit)
        )
        return JSONResponse({"notifications": rows})

    @app.get("/health")
    async def health() -> Response:
        try:
            stats = await anyio.to_thread.run_sync(lambda: router.outbox.pending_stats(router.clock()))
        except StoreError as exc:
            return JSONResponse({"status": "unhealthy", "outbox": str(exc)}, status_code=503)
        pending: dict[str, Any] = {
            c: {"pending": n, "oldest_seconds": round(a, 1)} for c, (n, a) in stats.items()
        }
        return JSONResponse(
            {
                "status": "healthy" if router.started else "starting",
                "channels": [c.name for c in router.channels],
                "outbox": pending,
            }
        )

    @app.get("/health/ready")
    async def ready() -> Response:
        if not router.started:
            return _error(503, "senders not started")
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(router.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
