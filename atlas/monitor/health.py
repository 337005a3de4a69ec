"""`atlas monitor --check-health`: `system check --health` plus what only a running installation
can answer: is the API serving, is the exporter serving, how old is the last backup.

The store-side checks (database, engine heartbeat and workers, backlog, maintenance, disk, memory,
services) are atlas.ops.checks' own; this module adds the API, the exporter and the backups.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from atlas.alerting.config import read_alerting
from atlas.errors import AtlasError, DatabaseNotReady
from atlas.observability import health
from atlas.observability.health import Component
from atlas.ops.checks import health_report
from atlas.ops.services import ServiceManager, api_base
from atlas.settings import Settings
from atlas.store import open_store
from atlas.store.models import BACKUP_KEY

# Used when alerting.yaml has no enabled backup_age alert: a daily backup a little late is a
# warning, two missed days unhealthy (the shipped alerting.yaml's 26h / 50h).
BACKUP_WARNING_SECONDS = 26 * 3600.0
BACKUP_CRITICAL_SECONDS = 50 * 3600.0
HTTP_TIMEOUT_SECONDS = 3.0


def api(settings: Settings, timeout: float = HTTP_TIMEOUT_SECONDS) -> Component:
    """/health/ready: 200 healthy; 503 degraded with the API's reasons; no answer unhealthy."""
    url = f"{api_base(settings)}/health/ready"
    try:
        r = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return Component("api", "unhealthy", None, None, f"{url}: {type(exc).__name__}: {exc}")
    if r.status_code == 200:
        return Component("api", "healthy", r.status_code, None, f"{url} ready")
    try:
        reasons = r.json().get("reasons")
    except ValueError:
        reasons = None
    return Component("api", "degraded", r.status_code, None, f"{url} not ready: {reasons or r.text[:200]}")


def exporter(settings: Settings, timeout: float = HTTP_TIMEOUT_SECONDS) -> Component:
    """The exporter's /metrics answers and says its store read worked (atlas_exporter_store_up)."""
    if not settings.exporter_port:
        return Component("exporter", "degraded", None, None, "ATLAS_EXPORTER_PORT=0: no exporter to scrape")
    host = settings.exporter_host
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{host}:{settings.exporter_port}/metrics"
    try:
        r = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return Component("exporter", "degraded", None, None, f"{url}: {type(exc).__name__}: {exc}")
    if r.status_code != 200:
        return Component("exporter", "degraded", r.status_code, None, f"{url} answered {r.status_code}")
    if "\natlas_exporter_store_up 0" in r.text:
        return Component("exporter", "degraded", 0, None, f"{url} serves but cannot read the store")
    return Component("exporter", "healthy", r.status_code, None, f"{url} serving")


def backup_thresholds(settings: Settings) -> tuple[float, float]:
    """(warning, critical) ages from alerting.yaml's backup_age, so the agent and the alert agree."""
    warn, crit = BACKUP_WARNING_SECONDS, BACKUP_CRITICAL_SECONDS
    if settings.alerting_path.exists():
        for rule in read_alerting(settings.alerting_path).rules:
            if rule.name == "backup_age" and rule.enabled:
                crit = rule.thresholds.get("critical", crit)
                warn = rule.thresholds.get("warning", min(warn, crit))
    return warn, crit


def backups(settings: Settings, now: float | None = None) -> Component:
    now = time.time() if now is None else now
    warn, crit = backup_thresholds(settings)
    try:
        store = open_store(settings, migrate=False)
    except DatabaseNotReady as exc:
        return Component("backups", "unhealthy", None, crit, f"no database to read: {exc}")
    try:
        raw = store.kv_get(BACKUP_KEY)
    finally:
        store.close()
    try:
        finished = float(json.loads(raw)["finished_at"]) if raw else 0.0
    except (ValueError, TypeError, KeyError):
        finished = 0.0
    if not finished:
        return Component("backups", "degraded", None, warn, "no backup yet (atlas-ops backup create)")
    age = now - finished
    status = "unhealthy" if age > crit else "degraded" if age > warn else "healthy"
    return Component("backups", status, round(age), warn, f"last backup {age / 3600:.1f} h ago")


def agent_report(settings: Settings, manager: ServiceManager | None) -> dict[str, Any]:
    """Every check the agent knows; status is the worst. Never creates or migrates a database.
    An alerting.yaml that does not load makes the backups check unhealthy with its error."""
    report = health_report(settings, manager)
    extra = [api(settings), exporter(settings)]
    try:
        extra.append(backups(settings))
    except AtlasError as exc:
        extra.append(Component("backups", "unhealthy", None, None, str(exc)))
    components = [Component(**c) for c in report["components"]]
    if not any(c.name == "engine" for c in components):
        # No database to read heartbeats from: say so on the engine's row too, not only the database's.
        components.insert(
            1, Component("engine", "unhealthy", None, None, "no database: no heartbeats to read")
        )
    return health.report([extra[0], *components, *extra[1:]])
