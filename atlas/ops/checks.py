"""`system check --health` from the command line: the API's health components, read directly from
the store and this machine (so it answers with the API down), plus the services' states."""

from __future__ import annotations

import shutil
import time
from typing import Any

from atlas.errors import DatabaseNotReady
from atlas.observability import health
from atlas.observability.health import Component
from atlas.ops.maintenance import get_mode
from atlas.ops.services import ServiceManager, names
from atlas.settings import Settings
from atlas.store import local_database_dir, open_store

# Exit codes by verdict, as monitoring plugins (Nagios, Icinga, Sensu) read them.
EXIT_CODES = {"healthy": 0, "degraded": 1, "unhealthy": 2}


def services_component(manager: ServiceManager) -> Component:
    states = {n: manager.status(n).state for n in names("all")}
    failed = sorted(n for n, s in states.items() if s == "failed")
    running = sorted(n for n, s in states.items() if s == "running")
    if failed:
        return Component("services", "unhealthy", ",".join(failed), None, f"failed: {', '.join(failed)}")
    return Component(
        "services",
        "healthy",
        len(running),
        None,
        f"running: {', '.join(running) or 'none'} ({manager.backend})",
    )


def health_report(settings: Settings, manager: ServiceManager | None) -> dict[str, Any]:
    """Every component's status; the report's status is the worst. Never creates a database."""
    db_dir = local_database_dir(settings)
    components: list[Component] = []
    try:
        store = open_store(settings, migrate=False)
    except DatabaseNotReady as exc:
        components.append(Component("database", "unhealthy", None, None, str(exc)))
    else:
        try:
            components.append(health.database(store))
            stats = store.queue_stats()
            oldest = stats["oldest_queued_at"]
            components += [
                health.engine(store, settings.lease_seconds),
                health.backlog(
                    int(stats["queued"]),
                    time.time() - oldest if oldest else 0.0,
                    settings.api_backlog_high_water,
                    0.0,
                ),
                health.maintenance(get_mode(store)),
            ]
        finally:
            store.close()
    free = shutil.disk_usage(db_dir if db_dir.exists() else settings.data_dir.parent).free
    components += [health.disk(free, settings.disk_low_water_bytes), health.memory()]
    if manager is not None:
        components.append(services_component(manager))
    return health.report(components)
