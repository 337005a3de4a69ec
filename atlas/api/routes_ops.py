"""Operating Atlas over HTTP: dead-letter queue, maintenance mode, health.

Routes that query the store are plain `def` (run in FastAPI's thread pool): a DLQ listing over a
large queue must not hold up the event loop ingest is answered on. The probes that read only
memory stay `async`.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from atlas import __version__
from atlas.api.guards import ApiError
from atlas.api.routes_items import ERRORS, item_view
from atlas.api.schemas import (
    ID_PATTERN,
    NO_NUL_PATTERN,
    DeadReason,
    DLQView,
    HealthView,
    ItemKind,
    MaintenanceIn,
    MaintenanceView,
    ReplayIn,
    ReplayOut,
    Status,
)
from atlas.api.services import Services
from atlas.observability import budgets, health
from atlas.ops.releases import running_release
from atlas.store.models import DLQFilter


def build(svc: Services) -> APIRouter:
    router = APIRouter(responses=ERRORS)
    admin = Depends(svc.auth.require("admin"))

    @router.get("/v1/dlq", response_model=DLQView, tags=["dlq"])
    def dlq(
        stage: str | None = Query(default=None, max_length=64, pattern=NO_NUL_PATTERN),
        error_class: str | None = Query(default=None, max_length=128, pattern=NO_NUL_PATTERN),
        host: str | None = Query(default=None, max_length=255, pattern=NO_NUL_PATTERN),
        kind: ItemKind | None = None,
        source: str | None = Query(default=None, max_length=255, pattern=NO_NUL_PATTERN),
        reason: DeadReason | None = None,
        cursor: str | None = Query(
            default=None, pattern=ID_PATTERN, description="next_cursor of the previous page."
        ),
        limit: int = Query(default=100, ge=1, le=1000),
        _: Any = admin,
    ) -> DLQView:
        """Dead items matching the filters, and the same items grouped by error fingerprint."""
        flt = DLQFilter(
            stage=stage, error_class=error_class, host=host, kind=kind, source=source, reason=reason
        )
        items = svc.store.dlq_list(flt, limit=limit, after=cursor)
        groups = svc.store.dlq_groups(flt)
        return DLQView(
            items=[item_view(svc.store, i, full=False) for i in items],
            groups=[vars(g) for g in groups],  # type: ignore[misc]
            next_cursor=items[-1].id if len(items) == limit else None,
        )

    @router.post("/v1/dlq/replay", response_model=ReplayOut, tags=["dlq"])
    def replay(body: ReplayIn, _: Any = admin) -> ReplayOut:
        """Requeue dead items by ids or filter; dry_run only counts them."""
        flt = DLQFilter(
            ids=tuple(dict.fromkeys(body.ids)),  # a repeated id is one item (and SQLite is slow on them)
            stage=body.stage,
            error_class=body.error_class,
            host=body.host,
            kind=body.kind,
            source=body.source,
            reason=body.reason,
        )
        matched = svc.store.dlq_replay(flt, dry_run=True)
        replayed = 0 if body.dry_run else svc.store.dlq_replay(flt)
        return ReplayOut(matched=matched, replayed=replayed, dry_run=body.dry_run)

    @router.delete("/v1/dlq/{item_id}", status_code=204, tags=["dlq"])
    def purge(item_id: str, _: Any = admin) -> None:
        """Delete one dead item and its history."""
        if svc.store.dlq_purge(DLQFilter(ids=(item_id,))) == 0:
            raise ApiError(404, f"no dead item {item_id!r}")

    @router.get("/v1/admin/maintenance", response_model=MaintenanceView, tags=["admin"])
    async def get_maintenance(_: Any = admin) -> MaintenanceView:
        return MaintenanceView(**svc.pressure.maintenance)  # type: ignore[arg-type]

    @router.post("/v1/admin/maintenance", response_model=MaintenanceView, tags=["admin"])
    def set_maintenance(body: MaintenanceIn, principal: Any = admin) -> MaintenanceView:
        """Turn maintenance on (writes get 503, engines stop claiming) or off; every process sees it.
        `by` records the API key that did it (as atlas-ops records user@host)."""
        by = f"api key {principal.name} ({principal.key_id})"
        return MaintenanceView(**svc.pressure.set_maintenance(body.enabled, body.reason, by))  # type: ignore[arg-type]

    @router.get("/health/live", response_model=Status, tags=["health"])
    async def live() -> Status:
        return Status(status="ok")

    @router.get("/health/ready", response_model=Status, tags=["health"], responses={503: {"model": Status}})
    async def ready() -> Any:
        """200 once this process can accept writes: store readable, disk above the mark, no maintenance,
        no engine reporting its workers failing."""
        reasons = []
        if not svc.pressure.store_ok or time.time() - svc.pressure.sampled_at > 10:
            reasons.append("store not reachable")
        if svc.pressure.disk_free < svc.settings.disk_low_water_bytes:
            reasons.append("disk under the low-water mark")
        if svc.pressure.maintenance.get("enabled"):
            reasons.append("maintenance")
        # An engine whose workers keep failing would leave every accepted item unprocessed.
        engine = health.engine(svc.store, svc.settings.lease_seconds) if not reasons else None
        if engine is not None and engine.status == "unhealthy":
            reasons.append(f"engine unhealthy: {engine.message}")
        if reasons:
            return JSONResponse(Status(status="unready", reasons=reasons).model_dump(), status_code=503)
        return Status(status="ready")

    processes = budgets.AtlasProcesses(svc.settings.data_dir)
    release = running_release()  # read once: the release this interpreter was started from

    def budget_checks() -> list[health.Component]:
        usage, s = processes.sample(), svc.settings
        return [
            budgets.memory_budget(usage, s.memory_budget_bytes),
            budgets.cpu_budget(usage, s.cpu_budget_cores),
            budgets.open_files_budget(usage, s.open_files_budget),
        ]

    @router.get("/health", response_model=HealthView, tags=["health"], responses={503: {"model": HealthView}})
    def full_health() -> Any:
        """Every component with its status, measured value, threshold and a message."""
        p, s = svc.pressure, svc.settings
        components = [
            health.database(svc.store),
            health.disk(p.disk_free, s.disk_low_water_bytes),
            health.memory(),
            health.engine(svc.store, s.lease_seconds),
            health.backlog(p.queued, p.oldest_queued_age, s.api_backlog_high_water, p.drain_rate),
            health.maintenance(p.maintenance),
            *budget_checks(),
        ]
        # Which code answers: blue-green deployments (and operators) tell the colors apart by it.
        body = health.report(components) | {"version": __version__, "release": release}
        return JSONResponse(body, status_code=503 if body["status"] == "unhealthy" else 200)

    return router
